// The port through which domain code announces committed changes. The server implements it with pub/sub
// (src/realtime.ts); domain code calls it only after its transaction has committed.
import type { BalanceChange } from "./balances.ts";

export interface Notify {
  /** One call per committed transaction; at most one change per (customer, meter). */
  balancesChanged(organizationId: string, changes: BalanceChange[]): void;
  customerChanged(organizationId: string, customerId: string): void;
}
