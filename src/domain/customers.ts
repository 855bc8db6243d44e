// Customers of a merchant: creation, edits, soft deletion, and resolving "customerId | externalCustomerId"
// arguments. Every function takes the organization explicitly; nothing here crosses tenants.
import { sqlOf, type Db } from "../db/client.ts";
import { asDate, type Sql } from "../db/sql.ts";
import type { Customer } from "../generated/prisma-postgresql/client.ts";
import { ConflictError, InvalidInputError, NotFoundError } from "./errors.ts";
import { countPendingEvents, externalIdLock } from "./ingestion.ts";
import type { Notify } from "./notify.ts";
import { checkMetadata } from "./metadata.ts";
import { isUniqueViolation } from "./prisma-errors.ts";
import { subscriptionEvent, writeOutbox } from "./outbox.ts";
import { endSubscriptionNow } from "./subscriptions.ts";
import { inTransaction } from "./transactions.ts";


export interface CustomerInput {
  /** Optional: many merchants know a customer only by their own id (externalId). */
  email?: string | null;
  name?: string | null;
  externalId?: string | null;
  metadata?: unknown;
}

export interface CustomerPatch {
  email?: string | null;
  name?: string | null;
  externalId?: string | null;
  metadata?: unknown;
}

/** Either id or the merchant's external id addresses a customer. */
export interface CustomerRef {
  customerId?: string | null;
  externalCustomerId?: string | null;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** A customer's email and its case-insensitive key; null (none) stays null. */
export function normalizeEmail(email: string | null, field: string): { email: string | null; emailKey: string | null } {
  if (email === null) return { email: null, emailKey: null };
  const trimmed = email.trim();
  if (trimmed.length > 320 || !EMAIL.test(trimmed)) throw new InvalidInputError("is not a valid email address", field);
  return { email: trimmed, emailKey: trimmed.toLowerCase() };
}

export function checkExternalId(value: string, field: string): string {
  const trimmed = value.trim();
  if (!trimmed) throw new InvalidInputError("must not be empty", field);
  if (trimmed.length > 255) throw new InvalidInputError("must be at most 255 characters", field);
  return trimmed;
}

function optionalName(name: string | null | undefined, field: string): string | null {
  if (name === null || name === undefined) return null;
  const trimmed = name.trim();
  if (trimmed.length > 255) throw new InvalidInputError("must be at most 255 characters", field);
  return trimmed || null;
}

/** Map a unique-constraint failure on Customer to the input field that caused it. */
function conflictFor(err: unknown, prefix: string): never {
  if (isUniqueViolation(err, "emailKey")) throw new ConflictError("A customer with this email already exists", `${prefix}.email`);
  if (isUniqueViolation(err, "externalId")) throw new ConflictError("A customer with this externalId already exists", `${prefix}.externalId`);
  throw err;
}

/**
 * Create a customer. Events already ingested for its externalId (while no customer had it) are linked and
 * counted in the same transaction.
 */
export async function createCustomer(db: Db, notify: Notify, organizationId: string, input: CustomerInput): Promise<Customer> {
  const { email, emailKey } = normalizeEmail(input.email ?? null, "input.email");
  const data = {
    organizationId,
    email,
    emailKey,
    name: optionalName(input.name, "input.name"),
    externalId: input.externalId == null ? null : checkExternalId(input.externalId, "input.externalId"),
    metadata: checkMetadata(input.metadata, "input.metadata"),
  };
  try {
    return await inTransaction(db, notify, organizationId, async (sql, tx) => {
      // The lock ingestion takes before it looks an unknown external id up again (see linkLateCustomers).
      if (data.externalId) await sql.lockKeys([externalIdLock(organizationId, data.externalId)]);
      const customer = await tx.customer.create({ data });
      const changes = customer.externalId ? await countPendingEvents(sql, tx, organizationId, customer.id, customer.externalId, new Date()) : [];
      return { value: customer, changes };
    });
  } catch (err) {
    conflictFor(err, "input");
  }
}

export async function updateCustomer(db: Db, notify: Notify, organizationId: string, id: string, patch: CustomerPatch): Promise<Customer> {
  const data: Record<string, unknown> = {};
  if (patch.email !== undefined) Object.assign(data, normalizeEmail(patch.email, "input.email"));
  if (patch.name !== undefined) data.name = optionalName(patch.name, "input.name");
  if (patch.externalId !== undefined) {
    data.externalId = patch.externalId === null ? null : checkExternalId(patch.externalId, "input.externalId");
  }
  if (patch.metadata !== undefined) data.metadata = checkMetadata(patch.metadata, "input.metadata");
  await requireCustomer(db, organizationId, id, "id");
  try {
    const updated = await inTransaction(db, notify, organizationId, async (sql, tx) => {
      if (typeof data.externalId === "string") await sql.lockKeys([externalIdLock(organizationId, data.externalId)]);
      // only while it lives: an update racing its deletion must not give a deleted customer an externalId or
      // email again, which would keep them from any new customer (and pending events from anyone)
      const { count } = await tx.customer.updateMany({ where: { id, deletedAt: null }, data });
      if (count !== 1) throw new NotFoundError("No such customer", "id");
      const customer = await tx.customer.findUniqueOrThrow({ where: { id } });
      const changes = patch.externalId && customer.externalId ? await countPendingEvents(sql, tx, organizationId, id, customer.externalId, new Date()) : [];
      return { value: customer, changes };
    });
    notify.customerChanged(organizationId, id);
    return updated;
  } catch (err) {
    conflictFor(err, "input");
  }
}

/**
 * Soft delete: the row and its history stay, but the customer disappears from reads and its email and
 * externalId become free for a new customer. Its sessions are revoked in the same transaction and their
 * WebSockets closed.
 */
export async function deleteCustomer(db: Db, notify: Notify, organizationId: string, id: string): Promise<Customer> {
  await requireCustomer(db, organizationId, id, "id");
  const now = new Date();
  const deleted = await inTransaction(db, notify, organizationId, async (sql, tx) => {
    await lockForDeletion(sql, id);
    // Deleted once: a second deletion racing this one (or an update) finds it gone.
    const { count } = await tx.customer.updateMany({ where: { id, deletedAt: null }, data: { deletedAt: now, emailKey: null, externalId: null } });
    if (count !== 1) throw new NotFoundError("No such customer", "id");
    // Its sessions are revoked with it, so token listings show them ended.
    await tx.accessToken.updateMany({ where: { customerId: id, revokedAt: null }, data: { revokedAt: now } });
    // Its subscriptions end now: nothing renews, bills or grants for a customer that is gone (each ending is a
    // subscription.canceled webhook, as a cancellation now is).
    const active = await tx.subscription.findMany({ where: { customerId: id, status: "ACTIVE" }, select: { id: true } });
    const ended = [];
    for (const s of active) if (await endSubscriptionNow(tx, s.id, now)) ended.push(await tx.subscription.findUniqueOrThrow({ where: { id: s.id } }));
    if (ended.length) await writeOutbox(sql, ended.map((s) => subscriptionEvent("subscription.canceled", s)), now);
    return { value: await tx.customer.findUniqueOrThrow({ where: { id } }), changes: [] };
  });
  // Its sessions end first (their sockets close), so no session is pushed the deleted customer.
  notify.accessRevoked(organizationId, { tokenIds: [], customerId: id });
  notify.customerChanged(organizationId, id);
  return deleted;
}

/**
 * PostgreSQL, before a customer is deleted: its row (FOR UPDATE, which waits for every write that share-locked
 * it or created a balance row of it, a foreign key check) and then its balance rows, in the order the node's
 * writer locks them. A write that holds any of them commits before the deletion; one that comes after waits
 * for it and then finds the customer deleted (BalanceBook.open with `liveCustomers`): no balance of a deleted
 * customer moves after its deletion. A writer that has locked some of the rows and then creates another (whose
 * foreign key check waits for the customer's lock) waits on this deletion while it waits on the writer:
 * PostgreSQL breaks that cycle within its deadlock_timeout and either transaction is run again. SQLite's writer
 * is alone: nothing to lock.
 */
async function lockForDeletion(sql: Sql, id: string): Promise<void> {
  if (sql.provider !== "postgresql") return;
  await sql.query(`SELECT "id" FROM "Customer" WHERE "id" = ${sql.param(1)} FOR UPDATE`, [id]);
  await sql.query(`SELECT "id" FROM "CustomerMeter" WHERE "customerId" = ${sql.param(1)} ORDER BY "id" FOR UPDATE`, [id]);
}

/**
 * Inside a write's transaction: the customer is still live, and stays so until the transaction ends (PostgreSQL:
 * its row is share-locked, so a deletion waits for this write, or this write for the deletion, whose commit it
 * then sees; SQLite: one writer at a time). Otherwise NOT_FOUND naming `field`: a write racing the customer's
 * deletion lands before it or not at all.
 */
export async function lockLiveCustomer(sql: Sql, id: string, field: string): Promise<void> {
  const lock = sql.provider === "postgresql" ? " FOR SHARE" : "";
  const row = await sql.first(`SELECT "id" FROM "Customer" WHERE "id" = ${sql.param(1)} AND "deletedAt" IS NULL${lock}`, [id]);
  if (!row) throw new NotFoundError("No such customer", field);
}

/** A live (not deleted) customer of this organization, or NOT_FOUND naming `field`. */
export async function requireCustomer(db: Db, organizationId: string, id: string, field: string): Promise<Customer> {
  const customer = await findLiveCustomer(db, organizationId, "id", id);
  if (!customer) throw new NotFoundError("No such customer", field);
  return customer;
}

/**
 * The live customer with this id or externalId: one statement on the hot reads' connection (src/db/client.ts
 * sqlOf), in Prisma's shape. Every request that names a customer starts here.
 */
async function findLiveCustomer(db: Db, organizationId: string, column: "id" | "externalId", value: string): Promise<Customer | null> {
  const sql = sqlOf(db);
  const row = await sql.first<Record<string, unknown>>(
    `SELECT ${CUSTOMER_COLUMNS} FROM "Customer" WHERE "organizationId" = ${sql.param(1)} AND "${column}" = ${sql.param(2)} AND "deletedAt" IS NULL LIMIT 1`,
    [organizationId, value],
  );
  return row ? customerOfRow(row) : null;
}

/** Every column of a Customer row, for the reads past Prisma (customerOfRow reads them back). */
export const CUSTOMER_COLUMNS = `"id", "organizationId", "email", "emailKey", "name", "externalId", "metadata", "deletedAt", "createdAt", "updatedAt"`;

/** A Customer row read past Prisma (CUSTOMER_COLUMNS, either engine's shapes) as Prisma would return it. */
export function customerOfRow(row: Record<string, unknown>): Customer {
  return {
    id: String(row.id),
    organizationId: String(row.organizationId),
    email: row.email == null ? null : String(row.email),
    emailKey: row.emailKey == null ? null : String(row.emailKey),
    name: row.name == null ? null : String(row.name),
    externalId: row.externalId == null ? null : String(row.externalId),
    // PostgreSQL's driver parses jsonb; SQLite keeps Json columns as text
    metadata: (typeof row.metadata === "string" ? JSON.parse(row.metadata) : row.metadata) as Customer["metadata"],
    deletedAt: row.deletedAt == null ? null : asDate(row.deletedAt as Date | string),
    createdAt: asDate(row.createdAt as Date | string),
    updatedAt: asDate(row.updatedAt as Date | string),
  };
}

/**
 * Which column a `customerId | externalCustomerId` pair looks a customer up by, and the argument to name when
 * none is found. Exactly one must be given.
 */
export function customerLookup(ref: CustomerRef, prefix = ""): { column: "id" | "externalId"; value: string; field: string } {
  const at = (name: string) => (prefix ? `${prefix}.${name}` : name);
  if (ref.customerId && ref.externalCustomerId) {
    throw new InvalidInputError("give either customerId or externalCustomerId, not both", at("customerId"));
  }
  if (ref.customerId) return { column: "id", value: ref.customerId, field: at("customerId") };
  if (ref.externalCustomerId) return { column: "externalId", value: ref.externalCustomerId, field: at("externalCustomerId") };
  throw new InvalidInputError("customerId or externalCustomerId is required", at("customerId"));
}

/** What a lookup that found no live customer answers. */
export function noSuchCustomer(lookup: ReturnType<typeof customerLookup>): NotFoundError {
  return new NotFoundError(noSuchCustomerMessage(lookup), lookup.field);
}

/** The message of noSuchCustomer (without building the error). */
export function noSuchCustomerMessage(lookup: Pick<ReturnType<typeof customerLookup>, "column">): string {
  return lookup.column === "id" ? "No such customer" : "No customer with this externalId";
}

/** The live customer a `customerId | externalCustomerId` pair addresses. Exactly one must be given. */
export async function resolveCustomerRef(db: Db, organizationId: string, ref: CustomerRef, prefix = ""): Promise<Customer> {
  const lookup = customerLookup(ref, prefix);
  const customer = await findLiveCustomer(db, organizationId, lookup.column, lookup.value);
  if (!customer) throw noSuchCustomer(lookup);
  return customer;
}
