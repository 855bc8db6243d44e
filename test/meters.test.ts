import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArchiveMeter, CreateMeter, ListMeters, UpdateMeter } from "./documents.ts";
import { startTestApp, type TestApp } from "./support/app.ts";
import { customer, ingest, meter, named } from "./support/fixtures.ts";

let t: TestApp;
beforeAll(async () => {
  t = await startTestApp();
});
afterAll(() => t?.close());

describe("meters", () => {
  it("creates a meter with a nested filter and reads its definition back", async () => {
    const { createMeter } = await t.ok(CreateMeter, {
      input: {
        name: "GPT tokens",
        filter: {
          conjunction: "AND",
          clauses: [
            { property: "name", operator: "EQ", value: "llm.completion" },
            { filter: { conjunction: "OR", clauses: [{ property: "model", operator: "LIKE", value: "gpt" }, { property: "tokens", operator: "GT", value: 1000 }] } },
          ],
        },
        aggregation: { func: "SUM", property: "tokens" },
      },
    });
    expect(createMeter).toMatchObject({
      __typename: "Meter",
      name: "GPT tokens",
      aggregation: { func: "SUM", property: "tokens" },
      filter: {
        conjunction: "AND",
        clauses: [
          { property: "name", operator: "EQ", value: "llm.completion" },
          { conjunction: "OR", clauses: [{ property: "model", operator: "LIKE", value: "gpt" }, { property: "tokens", operator: "GT", value: 1000 }] },
        ],
      },
    });
  });

  it("rejects invalid definitions with typed errors naming the field", async () => {
    const bad = async (input: object) => (await t.ok(CreateMeter, { input: input as never })).createMeter;
    const base = { name: "m", filter: { conjunction: "AND", clauses: [] }, aggregation: { func: "COUNT" } };
    expect(await bad({ ...base, name: " " })).toMatchObject({ __typename: "InvalidInputError", field: "input.name" });
    expect(await bad({ ...base, aggregation: { func: "SUM" } })).toMatchObject({ field: "input.aggregation.property" });
    expect(await bad({ ...base, aggregation: { func: "COUNT", property: "x" } })).toMatchObject({ field: "input.aggregation.property" });
    expect(await bad({ ...base, filter: { conjunction: "AND", clauses: [{ property: "n", operator: "GT", value: "ten" }] } })).toMatchObject({
      field: "input.filter.clauses.0.value",
    });
    expect(await bad({ ...base, filter: { conjunction: "AND", clauses: [{ property: "n", operator: "EQ" }] } })).toMatchObject({ field: "input.filter.clauses.0.value" });
  });

  it("refuses to change filter or aggregation once the meter has counted events, but allows a rename", async () => {
    const m = await meter(t, "COUNT");
    const change = { filter: { conjunction: "OR" as const, clauses: [] } };
    expect((await t.ok(UpdateMeter, { id: m, input: change })).updateMeter.__typename).toBe("Meter");
    await t.ok(UpdateMeter, { id: m, input: { filter: { conjunction: "AND", clauses: [{ property: "name", operator: "EQ", value: "use" }] } } });
    await ingest(t, [{ name: "use", customerId: await customer(t) }]);
    expect((await t.ok(UpdateMeter, { id: m, input: change })).updateMeter).toMatchObject({ __typename: "ConflictError", field: "input.filter" });
    expect((await t.ok(UpdateMeter, { id: m, input: { aggregation: { func: "SUM", property: "n" } } })).updateMeter).toMatchObject({ field: "input.aggregation" });
    expect((await t.ok(UpdateMeter, { id: m, input: { name: "renamed" } })).updateMeter).toMatchObject({ __typename: "Meter", name: "renamed" });
  });

  it("a CREDIT meter whose events were only negative values (credits) has counted them too: no more changes but the name", async () => {
    const m = await meter(t, "SUM", { property: "n", filter: named("refunds-only"), negativeValues: "CREDIT" });
    await ingest(t, [{ name: "refunds-only", customerId: await customer(t), metadata: { n: -5 } }]);
    expect((await t.ok(UpdateMeter, { id: m, input: { negativeValues: "REJECT" } })).updateMeter).toMatchObject({ __typename: "ConflictError", field: "input.negativeValues" });
    expect((await t.ok(UpdateMeter, { id: m, input: { aggregation: { func: "SUM", property: "amount" } } })).updateMeter).toMatchObject({ __typename: "ConflictError", field: "input.aggregation" });
    expect((await t.ok(UpdateMeter, { id: m, input: { name: "credit meter" } })).updateMeter).toMatchObject({ __typename: "Meter", name: "credit meter" });
  });

  it("archives a meter: hidden from the list unless asked for", async () => {
    const m = await meter(t, "COUNT");
    expect((await t.ok(ArchiveMeter, { id: m })).archiveMeter).toMatchObject({ __typename: "Meter", id: m, archivedAt: expect.any(String) });
    expect((await t.ok(ListMeters, {})).meters.edges.map((e) => e.node.id)).not.toContain(m);
    expect((await t.ok(ListMeters, { includeArchived: true })).meters.edges.map((e) => e.node.id)).toContain(m);
  });

  it("hides another organization's meters", async () => {
    const m = await meter(t, "COUNT");
    const other = await t.newOrganization();
    expect((await t.ok(ListMeters, {}, other.token)).meters.edges).toEqual([]);
    expect((await t.ok(ArchiveMeter, { id: m }, other.token)).archiveMeter.__typename).toBe("NotFoundError");
  });
});
