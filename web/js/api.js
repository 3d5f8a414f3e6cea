// api — every call the pages make to the Voter API (same origin, through the gateway),
// the API key kept for this tab only (sessionStorage), and problem+json turned into text.

const KEY_ITEM = "voter.apiKey";

export function getKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

export const enc = (s) => encodeURIComponent(s);

// A failed call: status, the problem document (when the API sent one) and a sentence.
export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(describe(status, problem));
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

function describe(status, problem) {
  if (!problem) return `HTTP ${status}`;
  let text = problem.detail || problem.title || `HTTP ${status}`;
  const errors = Array.isArray(problem.errors) ? problem.errors : [];
  const parts = errors.map((e) => {
    const where = e.line ? ` (line ${e.line}${e.column ? `, column ${e.column}` : ""})` : "";
    return `${e.field ? e.field + ": " : ""}${e.message || ""}${where}`;
  });
  if (parts.length) text += " — " + parts.join("; ");
  return text;
}

// fetch + JSON; options.key sends the tab's key; throws ApiError on any non-2xx.
export async function call(method, path, { body, headers = {}, key = false, raw = false } = {}) {
  const h = { Accept: "application/json, application/problem+json", ...headers };
  if (key && getKey()) h["X-API-Key"] = getKey();
  let payload = body;
  if (body !== undefined && !(body instanceof FormData) && typeof body !== "string") {
    h["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers: h, body: payload, cache: "no-store" });
  if (raw) return res;
  const type = res.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await res.json().catch(() => null) : null;
  if (!res.ok) throw new ApiError(res.status, data, Number(res.headers.get("Retry-After")) || 0);
  return data ?? {};
}

export const get = (path, opts) => call("GET", path, opts);
export const post = (path, body, opts = {}) => call("POST", path, { ...opts, body });

export function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// Every election (HAL pages of the election service), newest first.
export async function elections() {
  const all = [];
  for (let page = 0; page < 50; page++) {
    const d = await get(`/election/elections?size=100&page=${page}`);
    all.push(...((d._embedded && d._embedded.elections) || []));
    if (!d.page || page + 1 >= d.page.totalPages) break;
  }
  return all.sort((a, b) => String(b.date).localeCompare(String(a.date)));
}

// The candidates of one election with name, party and home state.
export async function candidates(title) {
  const d = await get(`/candidate/candidates/search/findByElectionContains?election=${enc(title)}&size=200`);
  const list = (d._embedded && d._embedded.candidates) || [];
  return list.filter((c) => c.election === title);
}

export const results = (title) => get(`/voter/results/${enc(title)}`);

// One vote. The key is made once per intended vote by the caller and reused on a retry,
// so the API counts it once whatever happens on the way.
export function vote(candidate, election, idempotencyKey) {
  return post("/voter/votes", { candidate, election }, { headers: { "Idempotency-Key": idempotencyKey } });
}
