-- AlterTable
ALTER TABLE "Reservation" ADD COLUMN     "creditsPerUnit" BIGINT,
ADD COLUMN     "ratedMeterId" TEXT,
ADD COLUMN     "ratedUnits" BIGINT;
