import { describe, expect, it } from "vitest";
import { DecimalFormatError, formatUnits, parseUnits } from "../src/domain/units.ts";

describe("exact decimal units", () => {
  it("adds 0.1 and 0.2 to exactly 0.3", () => {
    expect(formatUnits(parseUnits("0.1") + parseUnits("0.2"))).toBe("0.3");
  });

  it("round-trips decimals, integers and signs in shortest form", () => {
    for (const [input, text] of [
      ["12.5", "12.5"],
      ["12.500000", "12.5"],
      ["-0.000001", "-0.000001"],
      ["0", "0"],
      ["-0", "0"],
      ["+7", "7"],
      ["999999999999.999999", "999999999999.999999"],
    ]) {
      expect(formatUnits(parseUnits(input))).toBe(text);
    }
    expect(formatUnits(parseUnits(42))).toBe("42");
  });

  it("rejects floats, exponents, junk and more than six decimal places", () => {
    for (const bad of ["1e3", "abc", "", "1.", ".5", "0.0000001", "1,5"]) {
      expect(() => parseUnits(bad), bad).toThrow(DecimalFormatError);
    }
    expect(() => parseUnits(0.5)).toThrow(DecimalFormatError);
    expect(() => parseUnits("1000000000000.000001")).toThrow(/too large/);
  });
});
