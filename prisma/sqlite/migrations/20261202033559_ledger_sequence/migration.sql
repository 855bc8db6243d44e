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
    "ledgerSequence" BIGINT NOT NULL DEFAULT 0,
    "ledgerAt" DATETIME,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL,
    CONSTRAINT "CustomerMeter_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "Organization" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "CustomerMeter_customerId_fkey" FOREIGN KEY ("customerId") REFERENCES "Customer" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "CustomerMeter_meterId_fkey" FOREIGN KEY ("meterId") REFERENCES "Meter" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);
INSERT INTO "new_CustomerMeter" ("aggCount", "aggMax", "aggMin", "aggSum", "balance", "consumedUnits", "createdAt", "creditedUnits", "customerId", "directUnits", "id", "meterId", "organizationId", "updatedAt", "version") SELECT "aggCount", "aggMax", "aggMin", "aggSum", "balance", "consumedUnits", "createdAt", "creditedUnits", "customerId", "directUnits", "id", "meterId", "organizationId", "updatedAt", "version" FROM "CustomerMeter";
DROP TABLE "CustomerMeter";
ALTER TABLE "new_CustomerMeter" RENAME TO "CustomerMeter";
CREATE INDEX "CustomerMeter_organizationId_customerId_idx" ON "CustomerMeter"("organizationId", "customerId");
CREATE UNIQUE INDEX "CustomerMeter_customerId_meterId_key" ON "CustomerMeter"("customerId", "meterId");
CREATE TABLE "new_LedgerEntry" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "organizationId" TEXT NOT NULL,
    "customerId" TEXT NOT NULL,
    "meterId" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "units" BIGINT NOT NULL,
    "balanceAfter" BIGINT NOT NULL,
    "occurredAt" DATETIME NOT NULL,
    "sequence" BIGINT NOT NULL DEFAULT 0,
    "grantId" TEXT,
    "eventId" TEXT,
    "eventCount" INTEGER NOT NULL DEFAULT 0,
    "description" TEXT,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO "new_LedgerEntry" ("balanceAfter", "createdAt", "customerId", "description", "eventCount", "eventId", "grantId", "id", "kind", "meterId", "occurredAt", "organizationId", "units") SELECT "balanceAfter", "createdAt", "customerId", "description", "eventCount", "eventId", "grantId", "id", "kind", "meterId", "occurredAt", "organizationId", "units" FROM "LedgerEntry";
DROP TABLE "LedgerEntry";
ALTER TABLE "new_LedgerEntry" RENAME TO "LedgerEntry";
CREATE INDEX "LedgerEntry_customerId_meterId_occurredAt_idx" ON "LedgerEntry"("customerId", "meterId", "occurredAt");
CREATE INDEX "LedgerEntry_customerId_meterId_sequence_idx" ON "LedgerEntry"("customerId", "meterId", "sequence");
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;

-- Backfill: existing entries are numbered per balance in the order the ledger listed them (occurredAt, id),
-- and each balance remembers its count and its last entry's time.
UPDATE "LedgerEntry" SET "sequence" = r."n"
  FROM (SELECT "id", ROW_NUMBER() OVER (PARTITION BY "customerId", "meterId" ORDER BY "occurredAt", "id") AS "n" FROM "LedgerEntry") AS r
 WHERE r."id" = "LedgerEntry"."id";
UPDATE "CustomerMeter" SET "ledgerSequence" = r."n", "ledgerAt" = r."at"
  FROM (SELECT "customerId", "meterId", COUNT(*) AS "n", MAX("occurredAt") AS "at" FROM "LedgerEntry" GROUP BY "customerId", "meterId") AS r
 WHERE r."customerId" = "CustomerMeter"."customerId" AND r."meterId" = "CustomerMeter"."meterId";
