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
    "archivedAt" DATETIME,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL,
    CONSTRAINT "Meter_organizationId_fkey" FOREIGN KEY ("organizationId") REFERENCES "Organization" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);
INSERT INTO "new_Meter" ("aggregationFunc", "aggregationProperty", "archivedAt", "createdAt", "filter", "id", "name", "organizationId", "updatedAt") SELECT "aggregationFunc", "aggregationProperty", "archivedAt", "createdAt", "filter", "id", "name", "organizationId", "updatedAt" FROM "Meter";
DROP TABLE "Meter";
ALTER TABLE "new_Meter" RENAME TO "Meter";
CREATE INDEX "Meter_organizationId_createdAt_idx" ON "Meter"("organizationId", "createdAt");
PRAGMA foreign_keys=ON;
PRAGMA defer_foreign_keys=OFF;
