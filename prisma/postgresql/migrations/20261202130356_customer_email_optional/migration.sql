-- AlterTable
ALTER TABLE "Customer" ALTER COLUMN "email" DROP NOT NULL;
