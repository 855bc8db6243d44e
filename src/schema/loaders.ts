// Per-request batching of the rows that nested fields point at (a balance's meter and customer): every row
// asked for in one tick of the event loop is read in one statement. Nothing is cached beyond the batch, so a
// long-lived subscription context always reads fresh.
import DataLoader from "dataloader";
import type { Db } from "../db/client.ts";
import type { Customer, Meter } from "../generated/prisma-postgresql/client.ts";

export interface Loaders {
  meter: DataLoader<string, Meter | null>;
  customer: DataLoader<string, Customer | null>;
}

function byId<T extends { id: string }>(find: (ids: string[]) => Promise<T[]>): DataLoader<string, T | null> {
  return new DataLoader<string, T | null>(
    async (ids) => {
      const rows = new Map((await find([...ids])).map((r) => [r.id, r]));
      return ids.map((id) => rows.get(id) ?? null);
    },
    { cache: false },
  );
}

export function createLoaders(db: Db): Loaders {
  return {
    meter: byId((ids) => db.meter.findMany({ where: { id: { in: ids } } })),
    customer: byId((ids) => db.customer.findMany({ where: { id: { in: ids } } })),
  };
}
