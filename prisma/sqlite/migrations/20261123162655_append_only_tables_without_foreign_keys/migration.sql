-- RedefineTables
PRAGMA defer_foreign_keys=ON;
PRAGMA foreign_keys=OFF;
CREATE TABLE "new_Event" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "organizationId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "customerId" TEXT,
    "externalCustomerId" TEXT,
    "externalId" TEXT,
    "timestamp" DATETIME NOT NULL,
    "metadata" JSONB NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO "new_Event" ("createdAt", "customerId", "externalCustomerId", "externalId", "id", "metadata", "name", "organizationId", "timestamp") SELECT "createdAt", "customerId", "externalCustomerId", "externalId", "id", "metadata", "name", "organizationId", "timestamp" FROM "Event";
DROP TABLE "Event";
ALTER TABLE "new_Event" RENAME TO "Event";
CREATE INDEX "Event_organizationId_customerId_timestamp_idx" ON "Event"("organizationId", "customerId", "timestamp");
CREATE INDEX "Event_organizationId_externalCustomerId_idx" ON "Event"("organizationId", "externalCustomerId");
CREATE INDEX "Event_organizationId_timestamp_idx" ON "Event"("organizationId", "timestamp");
CREATE UNIQUE INDEX "Event_organizationId_externalId_key" ON "Event"("organizationId", "externalId");
CREATE TABLE "new_LedgerEntry" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "organizationId" TEXT NOT NULL,
    "customerId" TEXT NOT NULL,
    "meterId" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "units" BIGINT NOT NULL,
    "balanceAfter" BIGINT NOT NULL,
    "occurredAt" DATETIME NOT NULL,
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
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;
