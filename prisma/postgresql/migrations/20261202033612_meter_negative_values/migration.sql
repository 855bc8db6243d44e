-- AlterTable
ALTER TABLE "Meter" ADD COLUMN     "negativeValues" TEXT NOT NULL DEFAULT 'REJECT';
