import { expect, it } from "vitest";
import { orderedId } from "../src/domain/ids.ts";

it("orderedId is unique and sorts in creation order", () => {
  const ids = Array.from({ length: 50_000 }, () => orderedId());
  expect(new Set(ids).size).toBe(ids.length);
  expect([...ids].sort()).toEqual(ids);
});
