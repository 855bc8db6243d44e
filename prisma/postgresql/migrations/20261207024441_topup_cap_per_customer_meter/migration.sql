-- DropIndex
DROP INDEX "TopUpRequest_autoTopUpId_month_idx";

-- CreateIndex
CREATE INDEX "TopUpRequest_customerId_meterId_month_idx" ON "TopUpRequest"("customerId", "meterId", "month");
