-- AlterTable
ALTER TABLE "CreditGrant" ADD COLUMN "creditedAt" DATETIME;

-- AlterTable
ALTER TABLE "Reservation" ADD COLUMN "committedUnits" BIGINT;

-- RedefineTables
PRAGMA defer_foreign_keys=ON;
PRAGMA foreign_keys=OFF;
CREATE TABLE "new_CustomerMeter" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "organizationId" TEXT NOT NULL,
    "customerId" TEXT NOT NULL,
    "meterId" TEXT NOT NULL,
    "consumedUnits" BIGINT NOT NULL DEFAULT 0,
    "creditedUnits" BIGINT NOT NULL DEFAULT 0,
    "balance" BIGINT NOT NULL DEFAULT 0,
    "aggCount" BIGINT NOT NULL DEFAULT 0,
    "aggSum" BIGINT NOT NULL DEFAULT 0,
    "aggMax" BIGINT,
    "aggMin" BIGINT,
    "directUnits" BIGINT NOT NULL DEFAULT 0,
    "version" INTEGER NOT NULL DEFAULT 0,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL,
    CONSTRAINT "CustomerMeter_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "Organization" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "CustomerMeter_customerId_fkey" FOREIGN KEY ("customerId") REFERENCES "Customer" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "CustomerMeter_meterId_fkey" FOREIGN KEY ("meterId") REFERENCES "Meter" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);
INSERT INTO "new_CustomerMeter" ("aggCount", "aggMax", "aggMin", "aggSum", "balance", "consumedUnits", "createdAt", "creditedUnits", "customerId", "id", "meterId", "organizationId", "updatedAt", "version") SELECT "aggCount", "aggMax", "aggMin", "aggSum", "balance", "consumedUnits", "createdAt", "creditedUnits", "customerId", "id", "meterId", "organizationId", "updatedAt", "version" FROM "CustomerMeter";
DROP TABLE "CustomerMeter";
ALTER TABLE "new_CustomerMeter" RENAME TO "CustomerMeter";
CREATE INDEX "CustomerMeter_organizationId_customerId_idx" ON "CustomerMeter"("organizationId", "customerId");
CREATE UNIQUE INDEX "CustomerMeter_customerId_meterId_key" ON "CustomerMeter"("customerId", "meterId");
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;

-- CreateIndex
CREATE INDEX "CreditGrant_expiredAt_expiresAt_idx" ON "CreditGrant"("expiredAt", "expiresAt");

-- CreateIndex
CREATE INDEX "CreditGrant_creditedAt_effectiveAt_idx" ON "CreditGrant"("creditedAt", "effectiveAt");

-- CreateIndex
CREATE INDEX "Reservation_status_expiresAt_idx" ON "Reservation"("status", "expiresAt");

-- Grants made before scheduled grants existed took effect when they were made.
UPDATE "CreditGrant" SET "creditedAt" = "effectiveAt";
