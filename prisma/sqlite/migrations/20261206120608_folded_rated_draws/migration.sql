-- DropIndex
DROP INDEX "LedgerEntry_customerId_meterId_sequence_idx";

-- DropIndex
DROP INDEX "LedgerEntry_customerId_meterId_occurredAt_idx";

-- AlterTable
ALTER TABLE "LedgerEntry" ADD COLUMN "ratedBalanceAfter" BIGINT;
ALTER TABLE "LedgerEntry" ADD COLUMN "ratedSequence" BIGINT;
ALTER TABLE "LedgerEntry" ADD COLUMN "ratedUnits" BIGINT;

-- CreateIndex
CREATE INDEX "LedgerEntry_customerId_meterId_occurredAt_sequence_idx" ON "LedgerEntry"("customerId", "meterId", "occurredAt", "sequence");
