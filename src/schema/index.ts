// The schema: side-effect imports register each domain's types and fields on the builder, then build once.
import { builder } from "./builder.ts";
import "./errors.ts";
import "./customer.ts";
import "./access-token.ts";
import "./customer-state.ts";
import "./meter.ts";
import "./credit-system.ts";
import "./balance.ts";
import "./event.ts";
import "./grant.ts";
import "./catalog.ts";
import "./subscription.ts";
import "./ledger.ts";
import "./authorization.ts";
import "./webhook.ts";
import "./topup.ts";

export const schema = builder.toSchema();
