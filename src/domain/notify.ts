// The port through which domain code announces committed changes. The server implements it with pub/sub
// (src/realtime.ts); domain code calls it only after its transaction has committed.
import type { BalanceChange } from "./balances.ts";

/**
 * Credentials that stopped being valid: revoked tokens, and/or every session of a deleted customer. Nodes
 * drop them from their caches and close the connections they authenticated.
 */
export interface Revocation {
  tokenIds: string[];
  /** A deleted customer: all of its sessions end. */
  customerId: string | null;
}

export interface Notify {
  /** One call per committed transaction; at most one change per (customer, meter). */
  balancesChanged(organizationId: string, changes: BalanceChange[]): void;
  customerChanged(organizationId: string, customerId: string): void;
  /** After a token's revocation or a customer's deletion has committed. */
  accessRevoked(organizationId: string, revocation: Revocation): void;
}
