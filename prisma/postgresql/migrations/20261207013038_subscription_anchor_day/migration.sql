-- AlterTable
ALTER TABLE "Subscription" ADD COLUMN     "anchorDay" INTEGER;
