-- AlterTable
ALTER TABLE "LedgerEntry" ADD COLUMN "creditsPerUnit" BIGINT;
ALTER TABLE "LedgerEntry" ADD COLUMN "ratedMeterId" TEXT;

-- CreateTable
CREATE TABLE "CreditRate" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "organizationId" TEXT NOT NULL,
    "poolMeterId" TEXT NOT NULL,
    "meterId" TEXT NOT NULL,
    "creditsPerUnit" BIGINT NOT NULL,
    "effectiveAt" DATETIME NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- CreateTable
CREATE TABLE "AutoTopUp" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "organizationId" TEXT NOT NULL,
    "customerId" TEXT NOT NULL,
    "meterId" TEXT NOT NULL,
    "belowUnits" BIGINT NOT NULL,
    "productId" TEXT NOT NULL,
    "maxPerMonth" INTEGER,
    "armed" BOOLEAN NOT NULL DEFAULT true,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL
);

-- CreateTable
CREATE TABLE "TopUpRequest" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "organizationId" TEXT NOT NULL,
    "autoTopUpId" TEXT NOT NULL,
    "customerId" TEXT NOT NULL,
    "meterId" TEXT NOT NULL,
    "productId" TEXT NOT NULL,
    "idempotencyKey" TEXT NOT NULL,
    "month" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'REQUESTED',
    "orderId" TEXT,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "completedAt" DATETIME
);

-- RedefineTables
PRAGMA defer_foreign_keys=ON;
PRAGMA foreign_keys=OFF;
CREATE TABLE "new_Meter" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "organizationId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "filter" JSONB NOT NULL,
    "aggregationFunc" TEXT NOT NULL,
    "aggregationProperty" TEXT,
    "negativeValues" TEXT NOT NULL DEFAULT 'REJECT',
    "creditPoolId" TEXT,
    "creditSystem" BOOLEAN NOT NULL DEFAULT false,
    "archivedAt" DATETIME,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL,
    CONSTRAINT "Meter_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "Organization" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);
INSERT INTO "new_Meter" ("aggregationFunc", "aggregationProperty", "archivedAt", "createdAt", "filter", "id", "name", "negativeValues", "organizationId", "updatedAt") SELECT "aggregationFunc", "aggregationProperty", "archivedAt", "createdAt", "filter", "id", "name", "negativeValues", "organizationId", "updatedAt" FROM "Meter";
DROP TABLE "Meter";
ALTER TABLE "new_Meter" RENAME TO "Meter";
CREATE INDEX "Meter_organizationId_createdAt_idx" ON "Meter"("organizationId", "createdAt");
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;

-- CreateIndex
CREATE INDEX "CreditRate_poolMeterId_idx" ON "CreditRate"("poolMeterId");

-- CreateIndex
CREATE UNIQUE INDEX "CreditRate_meterId_effectiveAt_key" ON "CreditRate"("meterId", "effectiveAt");

-- CreateIndex
CREATE UNIQUE INDEX "AutoTopUp_customerId_meterId_key" ON "AutoTopUp"("customerId", "meterId");

-- CreateIndex
CREATE INDEX "TopUpRequest_autoTopUpId_month_idx" ON "TopUpRequest"("autoTopUpId", "month");

-- CreateIndex
CREATE UNIQUE INDEX "TopUpRequest_organizationId_idempotencyKey_key" ON "TopUpRequest"("organizationId", "idempotencyKey");
