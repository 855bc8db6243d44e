-- AlterTable
ALTER TABLE "Order" ADD COLUMN "amount" BIGINT;
ALTER TABLE "Order" ADD COLUMN "currency" TEXT;

-- Orders made before amounts were recorded: the product's FIXED price (the oldest, if it has several), which
-- no API can change, so it is the price those orders were made at.
UPDATE "Order" SET
  "amount" = (SELECT p."amount" FROM "Price" p WHERE p."productId" = "Order"."productId" AND p."type" = 'FIXED' ORDER BY p."createdAt", p."id" LIMIT 1),
  "currency" = (SELECT p."currency" FROM "Price" p WHERE p."productId" = "Order"."productId" AND p."type" = 'FIXED' ORDER BY p."createdAt", p."id" LIMIT 1);
