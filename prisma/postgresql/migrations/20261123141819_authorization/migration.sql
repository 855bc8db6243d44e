-- AlterTable
ALTER TABLE "CreditGrant" ADD COLUMN     "creditedAt" TIMESTAMP(3);

-- AlterTable
ALTER TABLE "CustomerMeter" ADD COLUMN     "directUnits" BIGINT NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "Reservation" ADD COLUMN     "committedUnits" BIGINT;

-- CreateIndex
CREATE INDEX "CreditGrant_expiredAt_expiresAt_idx" ON "CreditGrant"("expiredAt", "expiresAt");

-- CreateIndex
CREATE INDEX "CreditGrant_creditedAt_effectiveAt_idx" ON "CreditGrant"("creditedAt", "effectiveAt");

-- CreateIndex
CREATE INDEX "Reservation_status_expiresAt_idx" ON "Reservation"("status", "expiresAt");

-- Grants made before scheduled grants existed took effect when they were made.
UPDATE "CreditGrant" SET "creditedAt" = "effectiveAt";
