-- DropIndex
DROP INDEX "Reservation_customerId_meterId_status_idx";

-- CreateIndex
CREATE INDEX "Reservation_customerId_meterId_status_expiresAt_idx" ON "Reservation"("customerId", "meterId", "status", "expiresAt");

-- CreateIndex
CREATE INDEX "Subscription_customerId_status_idx" ON "Subscription"("customerId", "status");
