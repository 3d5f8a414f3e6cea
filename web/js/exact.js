// exact — JSON whose numbers stay exact. A multi-winner count writes vote amounts as JSON
// numbers with up to 20 decimals and tallies up to about 10^17 (tabulator/README.md,
// "Exact decimals"): more digits than a double holds, so JSON.parse would round them.
// parseExact keeps every number as a Dec holding the text the file has; pages show that
// text, compare and add Decs exactly (BigInt), and use a double only for bar lengths.

export class Dec {
  constructor(text) {
    this.text = text;
  }
  toString() {
    return this.text;
  }
  // An approximation for geometry (bar widths), never for what is shown or compared.
  get approx() {
    return Number(this.text);
  }
}

// A number as a Dec (numbers from JSON.parse are accepted too, as their shortest text).
export const dec = (v) => (v instanceof Dec ? v : new Dec(String(v ?? 0)));

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const SPACE = /[ \t\n\r]*/y;

// JSON text → objects, arrays, strings, booleans, null and Decs. Throws SyntaxError on
// anything JSON.parse would refuse.
export function parseExact(text) {
  let i = 0;
  const fail = (what) => {
    throw new SyntaxError(`JSON: ${what} at character ${i}`);
  };
  const ws = () => {
    SPACE.lastIndex = i;
    SPACE.exec(text);
    i = SPACE.lastIndex;
  };
  const token = (re, what) => {
    re.lastIndex = i;
    const m = re.exec(text);
    if (!m) fail(`${what} expected`);
    i = re.lastIndex;
    return m[0];
  };
  const string = () => JSON.parse(token(STRING, "a string"));
  const value = () => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = {};
      ws();
      if (text[i] === "}") { i++; return obj; }
      for (;;) {
        ws();
        const k = string();
        ws();
        if (text[i++] !== ":") fail("':' expected");
        // defineProperty: a member named "__proto__" is a member, as with JSON.parse
        Object.defineProperty(obj, k, { value: value(), enumerable: true, writable: true, configurable: true });
        ws();
        const d = text[i++];
        if (d === "}") return obj;
        if (d !== ",") fail("',' or '}' expected");
      }
    }
    if (c === "[") {
      i++;
      const arr = [];
      ws();
      if (text[i] === "]") { i++; return arr; }
      for (;;) {
        arr.push(value());
        ws();
        const d = text[i++];
        if (d === "]") return arr;
        if (d !== ",") fail("',' or ']' expected");
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, i)) { i += word.length; return v; }
    }
    return new Dec(token(NUMBER, "a value"));
  };
  const v = value();
  ws();
  if (i !== text.length) fail("end of text expected");
  return v;
}

// value = n / 10^scale, n a BigInt
const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

function scaled(v) {
  const m = DECIMAL.exec(dec(v).text);
  if (!m) throw new RangeError(`not a decimal number: ${v}`);
  let n = BigInt(m[2] + (m[3] || ""));
  let scale = (m[3] || "").length - Number(m[4] || 0);
  if (scale < 0) {
    n *= 10n ** BigInt(-scale);
    scale = 0;
  }
  return { n: m[1] ? -n : n, scale };
}

function aligned(a, b) {
  const x = scaled(a), y = scaled(b);
  const s = Math.max(x.scale, y.scale);
  return [x.n * 10n ** BigInt(s - x.scale), y.n * 10n ** BigInt(s - y.scale), s];
}

// -1, 0 or 1 as a < b, a = b, a > b, exactly.
export function compare(a, b) {
  const [x, y] = aligned(a, b);
  return x < y ? -1 : x > y ? 1 : 0;
}

export const isZero = (v) => compare(v, 0) === 0;

// The exact sum, written without exponent or trailing zeros (as tabulate writes numbers).
export function sum(values) {
  let total = new Dec("0");
  for (const v of values) {
    const [x, y, s] = aligned(total, v);
    total = new Dec(plain(x + y, s));
  }
  return total;
}

function plain(n, scale) {
  const neg = n < 0n;
  const digits = (neg ? -n : n).toString().padStart(scale + 1, "0");
  const whole = digits.slice(0, digits.length - scale);
  const frac = digits.slice(digits.length - scale).replace(/0+$/, "");
  return (neg ? "-" : "") + whole + (frac ? `.${frac}` : "");
}
