-- CreateIndex
CREATE INDEX "Order_customerId_id_idx" ON "Order"("customerId", "id");
