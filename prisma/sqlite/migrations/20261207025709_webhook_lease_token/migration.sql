-- AlterTable
ALTER TABLE "WebhookEndpoint" ADD COLUMN "leaseToken" TEXT;
