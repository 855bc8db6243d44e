-- AlterTable
ALTER TABLE "LedgerEntry" ADD COLUMN     "creditsPerUnit" BIGINT,
ADD COLUMN     "ratedMeterId" TEXT;

-- AlterTable
ALTER TABLE "Meter" ADD COLUMN     "creditPoolId" TEXT,
ADD COLUMN     "creditSystem" BOOLEAN NOT NULL DEFAULT false;

-- CreateTable
CREATE TABLE "CreditRate" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "poolMeterId" TEXT NOT NULL,
    "meterId" TEXT NOT NULL,
    "creditsPerUnit" BIGINT NOT NULL,
    "effectiveAt" TIMESTAMP(3) NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "CreditRate_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "AutoTopUp" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "customerId" TEXT NOT NULL,
    "meterId" TEXT NOT NULL,
    "belowUnits" BIGINT NOT NULL,
    "productId" TEXT NOT NULL,
    "maxPerMonth" INTEGER,
    "armed" BOOLEAN NOT NULL DEFAULT true,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "AutoTopUp_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "TopUpRequest" (
    "id" TEXT NOT NULL,
    "organizationId" TEXT NOT NULL,
    "autoTopUpId" TEXT NOT NULL,
    "customerId" TEXT NOT NULL,
    "meterId" TEXT NOT NULL,
    "productId" TEXT NOT NULL,
    "idempotencyKey" TEXT NOT NULL,
    "month" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'REQUESTED',
    "orderId" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "completedAt" TIMESTAMP(3),

    CONSTRAINT "TopUpRequest_pkey" PRIMARY KEY ("id")
);

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
