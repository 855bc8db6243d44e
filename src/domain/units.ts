// Exact decimal units. Every quantity of credits or money is a bigint of micro-units (value × 10^6) from
// the GraphQL edge to the database and back; JavaScript numbers never carry a quantity.

/** Fractional digits kept exactly. */
export const UNIT_DECIMALS = 6;
export const UNIT_SCALE = 10n ** BigInt(UNIT_DECIMALS);

/**
 * Largest magnitude of one input value: one trillion units (10^18 micro-units), so a signed 64-bit column
 * (±9.2 × 10^18) still holds the sum of several of them.
 */
export const MAX_UNITS = 10n ** 12n * UNIT_SCALE;

export class DecimalFormatError extends Error {}

const DECIMAL = /^([+-]?)(\d+)(?:\.(\d+))?$/;

/**
 * Parse a decimal written in text ("12.5", "-0.000001", "42") or a safe integer into micro-units.
 * Rejects floats, exponents and more than UNIT_DECIMALS fractional digits (rounding money silently is a bug).
 */
export function parseUnits(input: string | number | bigint): bigint {
  let value: bigint;
  if (typeof input === "bigint") {
    value = input * UNIT_SCALE;
  } else if (typeof input === "number") {
    if (!Number.isSafeInteger(input)) {
      throw new DecimalFormatError("must be an integer or a decimal string such as \"12.5\" (floats are not exact)");
    }
    value = BigInt(input) * UNIT_SCALE;
  } else {
    const m = DECIMAL.exec(input.trim());
    if (!m) throw new DecimalFormatError(`"${input.slice(0, 40)}" is not a decimal number`);
    const [, sign, whole, fraction = ""] = m;
    const digits = fraction.replace(/0+$/, "");
    if (digits.length > UNIT_DECIMALS) {
      throw new DecimalFormatError(`has more than ${UNIT_DECIMALS} decimal places`);
    }
    value = BigInt(whole) * UNIT_SCALE + BigInt(digits.padEnd(UNIT_DECIMALS, "0") || "0");
    if (sign === "-") value = -value;
  }
  if (value > MAX_UNITS || value < -MAX_UNITS) throw new DecimalFormatError("is too large");
  return value;
}

/** Render a scaled integer as the shortest exact decimal text: 12500000n → "12.5". */
export function formatScaled(value: bigint, decimals: number): string {
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const scale = 10n ** BigInt(decimals);
  const whole = abs / scale;
  const fraction = (abs % scale).toString().padStart(decimals, "0").replace(/0+$/, "");
  return `${negative ? "-" : ""}${whole}${fraction ? `.${fraction}` : ""}`;
}

export function formatUnits(microUnits: bigint): string {
  return formatScaled(microUnits, UNIT_DECIMALS);
}
