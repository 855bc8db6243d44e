-- CreateIndex
CREATE INDEX "AccessToken_customerId_idx" ON "AccessToken"("customerId");

-- CreateIndex
CREATE INDEX "AutoTopUp_organizationId_customerId_idx" ON "AutoTopUp"("organizationId", "customerId");
