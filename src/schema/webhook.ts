// Webhooks and balance alerts: endpoints (secret shown once), the delivery log, redelivery, alert rules and
// the live `balanceAlerts` subscription.
import { Repeater } from "graphql-yoga";
import { listBalanceAlerts, setBalanceAlert } from "../domain/alert-rules.ts";
import type { AlertRule } from "../domain/alerts.ts";
import { parseUnits } from "../domain/units.ts";
import { InvalidInputError, LimitExceededError, NotFoundError } from "../domain/errors.ts";
import { isAlertType, WEBHOOK_EVENT_TYPES, type AlertType } from "../domain/outbox.ts";
import { createWebhookEndpoint, deleteWebhookEndpoint, DELIVERY_STATUSES, eventTypesOf, redeliverWebhook, rotateWebhookSecret, updateWebhookEndpoint } from "../domain/webhooks.ts";
import { builder, type Context } from "./builder.ts";
import { listScopeCustomer, orgId, readableCustomer, refArgs } from "./access.ts";
import { CustomerObject } from "./customer.ts";
import { MeterObject } from "./meter.ts";
import { pageArgs } from "./pagination.ts";

const EndpointStatus = builder.enumType("WebhookEndpointStatus", {
  values: {
    ENABLED: { description: "Deliveries are sent" },
    DISABLED: { description: "Nothing is sent: its deliveries failed for the whole retry window, or it was disabled through the API (see disabledReason)" },
  },
});
const DeliveryStatus = builder.enumType("WebhookDeliveryStatus", { values: DELIVERY_STATUSES });

const WebhookEndpointObject = builder.prismaObject("WebhookEndpoint", {
  description: "A receiver of signed webhooks (Standard Webhooks). Its secret is shown once, by createWebhookEndpoint.",
  fields: (t) => ({
    id: t.exposeID("id"),
    url: t.exposeString("url"),
    description: t.exposeString("description", { nullable: true }),
    eventTypes: t.stringList({ description: "The event types it receives; empty: every type", resolve: (e) => eventTypesOf(e) }),
    status: t.field({ type: EndpointStatus, resolve: (e) => (e.disabledAt ? "DISABLED" : "ENABLED") }),
    disabledAt: t.expose("disabledAt", { type: "DateTime", nullable: true }),
    disabledReason: t.exposeString("disabledReason", { nullable: true }),
    failingSince: t.expose("failingSince", { type: "DateTime", nullable: true, description: "The first failed attempt since its last success; null while deliveries succeed" }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
  }),
});

const WebhookDeliveryObject = builder.prismaObject("WebhookDelivery", {
  description: "One event sent to one endpoint: every attempt carries the same webhook-id.",
  fields: (t) => ({
    id: t.exposeID("id"),
    endpoint: t.relation("endpoint"),
    webhookId: t.string({ description: "The webhook-id header of its attempts (msg_…): what a receiver deduplicates on", resolve: (d) => `msg_${d.messageId}` }),
    eventType: t.exposeString("eventType"),
    sequence: t.int({ description: "Its number among the endpoint's deliveries: from 1, without gaps, in commit order", resolve: (d) => Number(d.sequence) }),
    status: t.field({ type: DeliveryStatus, resolve: (d) => d.status as (typeof DELIVERY_STATUSES)[number] }),
    attempts: t.exposeInt("attempts"),
    lastResponseStatus: t.exposeInt("lastResponseStatus", { nullable: true, description: "The HTTP status of the last attempt; null when it got no response" }),
    lastError: t.exposeString("lastError", { nullable: true }),
    lastAttemptAt: t.expose("lastAttemptAt", { type: "DateTime", nullable: true }),
    nextAttemptAt: t.expose("nextAttemptAt", { type: "DateTime", nullable: true, description: "When it is tried next; null once it succeeded or failed for good" }),
    createdAt: t.expose("createdAt", { type: "DateTime" }),
  }),
});

const CreatedEndpoint = builder.objectRef<{ endpointId: string; secret: string }>("CreatedWebhookEndpoint").implement({
  fields: (t) => ({
    endpoint: t.prismaField({ type: "WebhookEndpoint", resolve: (query, e, _args, ctx) => ctx.db.webhookEndpoint.findUniqueOrThrow({ ...query, where: { id: e.endpointId } }) }),
    secret: t.exposeString("secret", { description: "The signing secret (whsec_…), shown this once: verify deliveries with it" }),
  }),
});

const RotatedSecret = builder.objectRef<{ endpointId: string; secret: string; previousSecretExpiresAt: Date | null }>("RotatedWebhookSecret").implement({
  fields: (t) => ({
    endpoint: t.prismaField({ type: "WebhookEndpoint", resolve: (query, e, _args, ctx) => ctx.db.webhookEndpoint.findUniqueOrThrow({ ...query, where: { id: e.endpointId } }) }),
    secret: t.exposeString("secret", { description: "The new signing secret (whsec_…), shown this once" }),
    previousSecretExpiresAt: t.expose("previousSecretExpiresAt", { type: "DateTime", nullable: true, description: "Until then the secret before also signs every delivery (null: it no longer does)" }),
  }),
});

const CreateEndpointInput = builder.inputType("CreateWebhookEndpointInput", {
  fields: (t) => ({
    url: t.string({ required: true, description: "http or https; loopback, private and link-local addresses are refused unless WEBHOOK_ALLOW_PRIVATE_NETWORKS=true" }),
    eventTypes: t.stringList({ description: `Event types to receive (${WEBHOOK_EVENT_TYPES.join(", ")}); empty or omitted: every type` }),
    description: t.string(),
  }),
});
const UpdateEndpointInput = builder.inputType("UpdateWebhookEndpointInput", {
  fields: (t) => ({
    url: t.string(),
    eventTypes: t.stringList(),
    description: t.string(),
    disabled: t.boolean({ description: "true: stop sending; false: enable again (a disabled endpoint's pending deliveries resume)" }),
  }),
});

const AlertRuleObject = builder.objectRef<AlertRule>("BalanceAlertRule").implement({
  description: "When a balance raises alerts: the organization's default for a meter (customer null) or one customer's.",
  fields: (t) => ({
    id: t.exposeID("id"),
    customer: t.field({ type: CustomerObject, nullable: true, resolve: (r, _args, ctx) => (r.customerId ? ctx.loaders.customer.load(r.customerId) : null) }),
    meter: t.field({ type: MeterObject, resolve: async (r, _args, ctx) => (await ctx.loaders.meter.load(r.meterId))! }),
    lowBalanceUnits: t.field({ type: "Decimal", nullable: true, resolve: (r) => r.lowBalanceUnits }),
    expiringWithinDays: t.int({ nullable: true, resolve: (r) => r.expiringWithinDays }),
  }),
});
const SetAlertPayload = builder.objectRef<{ rule: AlertRule | null }>("SetBalanceAlertPayload").implement({
  fields: (t) => ({ rule: t.field({ type: AlertRuleObject, nullable: true, description: "null: both thresholds were null, and the rule was removed", resolve: (p) => p.rule }) }),
});
const SetAlertInput = builder.inputType("SetBalanceAlertInput", {
  fields: (t) => ({
    customerId: t.id({ description: "Omit both customer fields for the organization's default on the meter" }),
    externalCustomerId: t.string(),
    meterId: t.id({ required: true }),
    lowBalanceUnits: t.field({ type: "Decimal", description: "balance.low when available units fall below it, balance.recovered when back at or above it" }),
    expiringWithinDays: t.int({ description: "credits.expiring once for each grant with units left that expires within this many days (1 to 366)" }),
  }),
});

builder.mutationFields((t) => ({
  createWebhookEndpoint: t.field({
    type: CreatedEndpoint,
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, LimitExceededError] },
    args: { input: t.arg({ type: CreateEndpointInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const { endpoint, secret } = await createWebhookEndpoint(ctx.db, ctx.webhooks, orgId(ctx), input);
      return { endpointId: endpoint.id, secret };
    },
  }),
  updateWebhookEndpoint: t.prismaField({
    type: WebhookEndpointObject,
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError] },
    args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateEndpointInput, required: true }) },
    resolve: async (query, _root, { id, input }, ctx) => {
      const endpoint = await updateWebhookEndpoint(ctx.db, ctx.webhooks, orgId(ctx), String(id), input);
      return ctx.db.webhookEndpoint.findUniqueOrThrow({ ...query, where: { id: endpoint.id } });
    },
  }),
  rotateWebhookSecret: t.field({
    type: RotatedSecret,
    description:
      "A new signing secret for the endpoint (shown once). The secret it replaces keeps signing deliveries beside it for keepPreviousHours (0 to 168, default 24): the webhook-signature header then carries both signatures, so receivers can move to the new secret without missing a delivery.",
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError] },
    args: { id: t.arg.id({ required: true }), keepPreviousHours: t.arg.int() },
    resolve: async (_root, { id, keepPreviousHours }, ctx) => {
      const { endpoint, secret } = await rotateWebhookSecret(ctx.db, ctx.webhooks, orgId(ctx), String(id), keepPreviousHours, ctx.now());
      return { endpointId: endpoint.id, secret, previousSecretExpiresAt: endpoint.previousSecretExpiresAt };
    },
  }),
  deleteWebhookEndpoint: t.field({
    type: WebhookEndpointObject,
    description: "Deletes the endpoint and its delivery log; answers it as it was.",
    authScopes: { admin: true },
    errors: { types: [NotFoundError] },
    args: { id: t.arg.id({ required: true }) },
    resolve: (_root, { id }, ctx) => deleteWebhookEndpoint(ctx.db, orgId(ctx), String(id)),
  }),
  redeliverWebhook: t.prismaField({
    type: WebhookDeliveryObject,
    description: "Send a delivery again, now, with the same webhook-id (whatever its status).",
    authScopes: { admin: true },
    errors: { types: [NotFoundError] },
    args: { id: t.arg.id({ required: true }) },
    resolve: async (query, _root, { id }, ctx) => {
      const delivery = await redeliverWebhook(ctx.db, orgId(ctx), String(id), new Date());
      return ctx.db.webhookDelivery.findUniqueOrThrow({ ...query, where: { id: delivery.id } });
    },
  }),
  setBalanceAlert: t.field({
    type: SetAlertPayload,
    authScopes: { admin: true },
    errors: { types: [InvalidInputError, NotFoundError] },
    args: { input: t.arg({ type: SetAlertInput, required: true }) },
    resolve: async (_root, { input }, ctx) => ({
      rule: await setBalanceAlert(ctx.db, orgId(ctx), { ...refArgs(input), meterId: String(input.meterId), lowBalanceUnits: input.lowBalanceUnits, expiringWithinDays: input.expiringWithinDays }),
    }),
  }),
}));

const deliveriesWhere = (ctx: Context, args: { endpointId?: string | number | null; status?: string | null }) => ({
  organizationId: orgId(ctx),
  ...(args.endpointId ? { endpointId: String(args.endpointId) } : {}),
  ...(args.status ? { status: args.status } : {}),
});

builder.queryFields((t) => ({
  webhookEndpoints: t.prismaConnection(
    {
      type: "WebhookEndpoint",
      cursor: "id",
      description: "The organization's webhook endpoints, oldest first.",
      authScopes: { admin: true },
      totalCount: (_root, _args, ctx) => ctx.db.webhookEndpoint.count({ where: { organizationId: orgId(ctx) } }),
      resolve: async (query, _root, _args, ctx) => ctx.db.webhookEndpoint.findMany(await pageArgs(query, { organizationId: orgId(ctx) }, [{ id: "asc" }])),
    },
    { name: "WebhookEndpointConnection" },
    { name: "WebhookEndpointEdge" },
  ),
  webhookDeliveries: t.prismaConnection(
    {
      type: "WebhookDelivery",
      cursor: "id",
      description: "The delivery log, newest first: of one endpoint or all of them, of one status or all.",
      authScopes: { admin: true },
      args: { endpointId: t.arg.id(), status: t.arg({ type: DeliveryStatus }) },
      totalCount: (_root, args, ctx) => ctx.db.webhookDelivery.count({ where: deliveriesWhere(ctx, args) }),
      resolve: async (query, _root, args, ctx) => ctx.db.webhookDelivery.findMany(await pageArgs(query, deliveriesWhere(ctx, args), [{ id: "desc" }])),
    },
    { name: "WebhookDeliveryConnection" },
    { name: "WebhookDeliveryEdge" },
  ),
  balanceAlertRules: t.field({
    type: [AlertRuleObject],
    description: "Alert rules: the organization's defaults and, naming a customer, that customer's own.",
    authScopes: { admin: true },
    args: { customerId: t.arg.id(), externalCustomerId: t.arg.string(), meterId: t.arg.id() },
    resolve: async (_root, args, ctx) => {
      const customer = await listScopeCustomer(ctx, args);
      return listBalanceAlerts(ctx.db, orgId(ctx), { customerId: customer?.id, meterId: args.meterId ? String(args.meterId) : null });
    },
  }),
}));

const AlertTypeEnum = builder.enumType("BalanceAlertType", {
  values: {
    LOW: { description: "balance.low: available units fell below the rule's lowBalanceUnits" },
    DEPLETED: { description: "balance.depleted: available units reached zero or less" },
    RECOVERED: { description: "balance.recovered: back at or above the threshold (above zero without one)" },
    TOPUP_REQUESTED: { description: "topup.requested: available units fell below an auto top-up's belowUnits; createOrder with idempotencyKey completes it" },
  },
});

interface AlertRecord {
  id: string;
  type: "LOW" | "DEPLETED" | "RECOVERED" | "TOPUP_REQUESTED";
  customerId: string;
  meterId: string;
  balance: string;
  availableUnits: string;
  threshold: string;
  /** TOPUP_REQUESTED: the product to order and the key that completes the request */
  productId?: string;
  idempotencyKey?: string;
  occurredAt: Date;
}

const BalanceAlertObject = builder.objectRef<AlertRecord>("BalanceAlert").implement({
  description: "A balance crossed its alert rule's or auto top-up's line; the same alert the balance.* and topup.requested webhooks carry (id = the webhook-id without msg_).",
  fields: (t) => ({
    id: t.exposeID("id"),
    type: t.field({ type: AlertTypeEnum, resolve: (a) => a.type }),
    customer: t.field({ type: CustomerObject, resolve: async (a, _args, ctx) => (await ctx.loaders.customer.load(a.customerId))! }),
    meter: t.field({ type: MeterObject, resolve: async (a, _args, ctx) => (await ctx.loaders.meter.load(a.meterId))! }),
    balance: t.field({ type: "Decimal", description: "The balance right after the change", resolve: (a) => parseUnits(a.balance) }),
    availableUnits: t.field({ type: "Decimal", description: "balance − held units: what was compared with the threshold", resolve: (a) => parseUnits(a.availableUnits) }),
    threshold: t.field({ type: "Decimal", description: "The line crossed: lowBalanceUnits, or 0 for DEPLETED", resolve: (a) => parseUnits(a.threshold) }),
    occurredAt: t.expose("occurredAt", { type: "DateTime" }),
    productId: t.id({ nullable: true, description: "TOPUP_REQUESTED: the product the auto top-up buys", resolve: (a) => a.productId ?? null }),
    idempotencyKey: t.string({ nullable: true, description: "TOPUP_REQUESTED: give it to createOrder to complete the top-up (once)", resolve: (a) => a.idempotencyKey ?? null }),
  }),
});

/** The alert type of an outbox row's event type. */
const ALERT_TYPE_OF: Record<AlertType, AlertRecord["type"]> = {
  "balance.low": "LOW",
  "balance.depleted": "DEPLETED",
  "balance.recovered": "RECOVERED",
  "topup.requested": "TOPUP_REQUESTED",
};

builder.subscriptionFields((t) => ({
  balanceAlerts: t.field({
    type: BalanceAlertObject,
    description: "Balance alerts as they are recorded: an admin hears the whole organization (or the customer named), a customer session its own.",
    authScopes: { authenticated: true },
    args: { customerId: t.arg.id(), externalCustomerId: t.arg.string(), meterId: t.arg.id() },
    subscribe: async (_root, args, ctx) => {
      const named = args.customerId || args.externalCustomerId || ctx.principal?.kind === "customer";
      const customerId = named ? (await readableCustomer(ctx, refArgs(args))).id : null;
      const meterId = args.meterId ? String(args.meterId) : null;
      const messages = ctx.pubsub.subscribe("balance:alert", orgId(ctx));
      return new Repeater<{ id: string }>(async (push, stop) => {
        const it = messages[Symbol.asyncIterator]();
        stop.then(() => it.return?.());
        for (let r = await it.next(); !r.done; r = await it.next()) {
          if ((!customerId || r.value.customerId === customerId) && (!meterId || r.value.meterId === meterId)) await push(r.value);
        }
        stop();
      });
    },
    // The message names the outbox row; the alert is read from it.
    resolve: async (payload: { id: string }, _args, ctx) => {
      const row = await ctx.db.outboxMessage.findUnique({ where: { id: payload.id } });
      if (!row || !isAlertType(row.type)) throw new NotFoundError("No such alert", "id");
      const data = JSON.parse(row.payload) as Omit<AlertRecord, "id" | "type" | "occurredAt">;
      return { ...data, id: row.id, type: ALERT_TYPE_OF[row.type], occurredAt: row.createdAt };
    },
  }),
}));
