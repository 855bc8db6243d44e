-- AlterTable
ALTER TABLE "CustomerMeter" ADD COLUMN     "ledgerAt" TIMESTAMP(3),
ADD COLUMN     "ledgerSequence" BIGINT NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "LedgerEntry" ADD COLUMN     "sequence" BIGINT NOT NULL DEFAULT 0;

-- CreateIndex
CREATE INDEX "LedgerEntry_customerId_meterId_sequence_idx" ON "LedgerEntry"("customerId", "meterId", "sequence");

-- Backfill: existing entries are numbered per balance in the order the ledger listed them (occurredAt, id),
-- and each balance remembers its count and its last entry's time.
UPDATE "LedgerEntry" SET "sequence" = r."n"
  FROM (SELECT "id", ROW_NUMBER() OVER (PARTITION BY "customerId", "meterId" ORDER BY "occurredAt", "id") AS "n" FROM "LedgerEntry") AS r
 WHERE r."id" = "LedgerEntry"."id";
UPDATE "CustomerMeter" SET "ledgerSequence" = r."n", "ledgerAt" = r."at"
  FROM (SELECT "customerId", "meterId", COUNT(*) AS "n", MAX("occurredAt") AS "at" FROM "LedgerEntry" GROUP BY "customerId", "meterId") AS r
 WHERE r."customerId" = "CustomerMeter"."customerId" AND r."meterId" = "CustomerMeter"."meterId";
