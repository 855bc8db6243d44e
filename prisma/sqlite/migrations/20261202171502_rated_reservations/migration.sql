-- AlterTable
ALTER TABLE "Reservation" ADD COLUMN "creditsPerUnit" BIGINT;
ALTER TABLE "Reservation" ADD COLUMN "ratedMeterId" TEXT;
ALTER TABLE "Reservation" ADD COLUMN "ratedUnits" BIGINT;
