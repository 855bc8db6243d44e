-- Every text column compares and sorts bytewise (COLLATE "C"), as SQLite's do (BINARY): ids, keys, names.
--
-- Every text column here holds an identifier, a key or a name matched exactly: none is sorted for a reader. A
-- linguistic collation (the database's default, such as en_US.UTF-8 or C.UTF-8) costs a strcoll call for each
-- comparison in every index lookup, insert and sort on these columns. Bytewise, the balance rows' locking read
-- took about half the time (1,400 rows: 4.4-5.2 ms against 6.4-9.3 ms on C.UTF-8), and sorted ids agree with
-- the ordering of the service's own code (JavaScript's < on strings) whatever the database's locale.
--
-- Prisma's schema cannot say a column's collation and its migration diff ignores it (prisma/prisma#17980), so
-- later migrations do not undo this. A migration that adds a text column adds it COLLATE "C" (or alters it
-- after): test/migrate-status.test.ts fails for any text column that is not. The type stays text, so the rows
-- are not rewritten, only the indexes on these columns are rebuilt. No statement here may hold a semicolon but
-- its last: Prisma's PostgreSQL adapter splits a migration's script at each one.

ALTER TABLE "AccessToken"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "kind" TYPE text COLLATE "C",
  ALTER COLUMN "tokenHash" TYPE text COLLATE "C",
  ALTER COLUMN "prefix" TYPE text COLLATE "C",
  ALTER COLUMN "name" TYPE text COLLATE "C",
  ALTER COLUMN "customerId" TYPE text COLLATE "C";

ALTER TABLE "AutoTopUp"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "customerId" TYPE text COLLATE "C",
  ALTER COLUMN "meterId" TYPE text COLLATE "C",
  ALTER COLUMN "productId" TYPE text COLLATE "C";

ALTER TABLE "BalanceAlertRule"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "customerId" TYPE text COLLATE "C",
  ALTER COLUMN "meterId" TYPE text COLLATE "C";

ALTER TABLE "BalanceAlertState"
  ALTER COLUMN "customerId" TYPE text COLLATE "C",
  ALTER COLUMN "meterId" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "level" TYPE text COLLATE "C";

ALTER TABLE "Benefit"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "type" TYPE text COLLATE "C",
  ALTER COLUMN "description" TYPE text COLLATE "C",
  ALTER COLUMN "meterId" TYPE text COLLATE "C";

ALTER TABLE "CreditExpiryNotice"
  ALTER COLUMN "grantId" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C";

ALTER TABLE "CreditGrant"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "customerId" TYPE text COLLATE "C",
  ALTER COLUMN "meterId" TYPE text COLLATE "C",
  ALTER COLUMN "source" TYPE text COLLATE "C",
  ALTER COLUMN "benefitId" TYPE text COLLATE "C",
  ALTER COLUMN "orderId" TYPE text COLLATE "C",
  ALTER COLUMN "subscriptionId" TYPE text COLLATE "C",
  ALTER COLUMN "idempotencyKey" TYPE text COLLATE "C",
  ALTER COLUMN "description" TYPE text COLLATE "C";

ALTER TABLE "CreditRate"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "poolMeterId" TYPE text COLLATE "C",
  ALTER COLUMN "meterId" TYPE text COLLATE "C";

ALTER TABLE "Customer"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "email" TYPE text COLLATE "C",
  ALTER COLUMN "emailKey" TYPE text COLLATE "C",
  ALTER COLUMN "name" TYPE text COLLATE "C",
  ALTER COLUMN "externalId" TYPE text COLLATE "C";

ALTER TABLE "CustomerMeter"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "customerId" TYPE text COLLATE "C",
  ALTER COLUMN "meterId" TYPE text COLLATE "C";

ALTER TABLE "CustomerMeterValue"
  ALTER COLUMN "customerMeterId" TYPE text COLLATE "C",
  ALTER COLUMN "value" TYPE text COLLATE "C";

ALTER TABLE "Event"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "name" TYPE text COLLATE "C",
  ALTER COLUMN "customerId" TYPE text COLLATE "C",
  ALTER COLUMN "externalCustomerId" TYPE text COLLATE "C",
  ALTER COLUMN "externalId" TYPE text COLLATE "C";

ALTER TABLE "LedgerEntry"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "customerId" TYPE text COLLATE "C",
  ALTER COLUMN "meterId" TYPE text COLLATE "C",
  ALTER COLUMN "kind" TYPE text COLLATE "C",
  ALTER COLUMN "grantId" TYPE text COLLATE "C",
  ALTER COLUMN "eventId" TYPE text COLLATE "C",
  ALTER COLUMN "description" TYPE text COLLATE "C",
  ALTER COLUMN "ratedMeterId" TYPE text COLLATE "C";

ALTER TABLE "Meter"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "name" TYPE text COLLATE "C",
  ALTER COLUMN "aggregationFunc" TYPE text COLLATE "C",
  ALTER COLUMN "aggregationProperty" TYPE text COLLATE "C",
  ALTER COLUMN "negativeValues" TYPE text COLLATE "C",
  ALTER COLUMN "creditPoolId" TYPE text COLLATE "C";

ALTER TABLE "Order"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "customerId" TYPE text COLLATE "C",
  ALTER COLUMN "productId" TYPE text COLLATE "C",
  ALTER COLUMN "subscriptionId" TYPE text COLLATE "C",
  ALTER COLUMN "status" TYPE text COLLATE "C",
  ALTER COLUMN "idempotencyKey" TYPE text COLLATE "C",
  ALTER COLUMN "currency" TYPE text COLLATE "C";

ALTER TABLE "Organization"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "name" TYPE text COLLATE "C";

ALTER TABLE "OutboxMessage"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "type" TYPE text COLLATE "C",
  ALTER COLUMN "payload" TYPE text COLLATE "C";

ALTER TABLE "Price"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "productId" TYPE text COLLATE "C",
  ALTER COLUMN "type" TYPE text COLLATE "C",
  ALTER COLUMN "currency" TYPE text COLLATE "C",
  ALTER COLUMN "meterId" TYPE text COLLATE "C";

ALTER TABLE "Product"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "name" TYPE text COLLATE "C",
  ALTER COLUMN "description" TYPE text COLLATE "C",
  ALTER COLUMN "recurringInterval" TYPE text COLLATE "C";

ALTER TABLE "ProductBenefit"
  ALTER COLUMN "productId" TYPE text COLLATE "C",
  ALTER COLUMN "benefitId" TYPE text COLLATE "C";

ALTER TABLE "Reservation"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "customerId" TYPE text COLLATE "C",
  ALTER COLUMN "meterId" TYPE text COLLATE "C",
  ALTER COLUMN "status" TYPE text COLLATE "C",
  ALTER COLUMN "idempotencyKey" TYPE text COLLATE "C",
  ALTER COLUMN "ratedMeterId" TYPE text COLLATE "C";

ALTER TABLE "Subscription"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "customerId" TYPE text COLLATE "C",
  ALTER COLUMN "productId" TYPE text COLLATE "C",
  ALTER COLUMN "status" TYPE text COLLATE "C";

ALTER TABLE "TopUpRequest"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "autoTopUpId" TYPE text COLLATE "C",
  ALTER COLUMN "customerId" TYPE text COLLATE "C",
  ALTER COLUMN "meterId" TYPE text COLLATE "C",
  ALTER COLUMN "productId" TYPE text COLLATE "C",
  ALTER COLUMN "idempotencyKey" TYPE text COLLATE "C",
  ALTER COLUMN "month" TYPE text COLLATE "C",
  ALTER COLUMN "status" TYPE text COLLATE "C",
  ALTER COLUMN "orderId" TYPE text COLLATE "C";

ALTER TABLE "WebhookDelivery"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "endpointId" TYPE text COLLATE "C",
  ALTER COLUMN "messageId" TYPE text COLLATE "C",
  ALTER COLUMN "eventType" TYPE text COLLATE "C",
  ALTER COLUMN "status" TYPE text COLLATE "C",
  ALTER COLUMN "lastError" TYPE text COLLATE "C";

ALTER TABLE "WebhookEndpoint"
  ALTER COLUMN "id" TYPE text COLLATE "C",
  ALTER COLUMN "organizationId" TYPE text COLLATE "C",
  ALTER COLUMN "url" TYPE text COLLATE "C",
  ALTER COLUMN "description" TYPE text COLLATE "C",
  ALTER COLUMN "eventTypes" TYPE text COLLATE "C",
  ALTER COLUMN "secretCiphertext" TYPE text COLLATE "C",
  ALTER COLUMN "disabledReason" TYPE text COLLATE "C",
  ALTER COLUMN "leaseToken" TYPE text COLLATE "C",
  ALTER COLUMN "previousSecretCiphertext" TYPE text COLLATE "C";
