// The dev overlay's replica set (mongo.yaml, Job mongo-rs-init), run by mongosh --nodb.
// Waits until every member answers, initiates the set on the first member alone (the
// image's first start has already put the root and service users on every member, and
// MongoDB refuses to initiate a set with members that hold data), then adds the other
// members one at a time (one voting member per reconfiguration); they sync from the
// primary, which replaces what they held. Idempotent: on a set that exists it only adds
// the members missing from its configuration, usually none. Exits non-zero when it gives
// up, and the Job runs it again.
const setName = process.env.MONGO_RS_NAME;
const hosts = process.env.MONGO_RS_MEMBERS.split(",");
const user = encodeURIComponent(process.env.MONGO_INITDB_ROOT_USERNAME);
const password = encodeURIComponent(process.env.MONGO_INITDB_ROOT_PASSWORD);

const asRoot = (host) =>
  `mongodb://${user}:${password}@${host}/admin?directConnection=true&authSource=admin`;

// An admin command's reply, also when it failed (mongosh throws on ok: 0)
function command(database, cmd) {
  try {
    return database.adminCommand(cmd);
  } catch (e) {
    if (e.code === undefined) throw e;
    return { ok: 0, code: e.code, codeName: e.codeName, errmsg: e.message };
  }
}

// f() until it returns something truthy; exceptions count as "not yet"
function until(what, f) {
  let last = "";
  for (let attempt = 0; attempt < 90; attempt++) {
    try {
      const result = f();
      if (result) return result;
    } catch (e) {
      last = `: ${e.message}`;
    }
    sleep(2000);
  }
  throw new Error(`rs-init.js: gave up waiting for ${what}${last}`);
}

// a member's view, without credentials: setName once it belongs to a set, primary
// once the set has one
const hello = (host) =>
  command(new Mongo(`mongodb://${host}/?directConnection=true`).getDB("admin"), { hello: 1 });

for (const host of hosts) {
  until(`${host} to answer`, () => hello(host).ok);
}

// Initiate only when no member belongs to a set: a first member that lost its data while
// the others still hold the set must rejoin it, not start a second set of the same name.
const configured = hosts.filter((host) => hello(host).setName);
if (configured.length > 0) {
  print(`rs-init.js: replica set ${setName} exists on ${configured.join(", ")}`);
} else {
  db = connect(asRoot(hosts[0]));
  const r = rs.initiate({ _id: setName, members: [{ _id: 0, host: hosts[0] }] });
  if (!r.ok) throw new Error(`rs-init.js: rs.initiate: ${JSON.stringify(r)}`);
  print(`rs-init.js: initiated ${setName} on ${hosts[0]}`);
}

const primary = until("a primary", () => hosts.map((host) => hello(host).primary).find(Boolean));
db = connect(asRoot(primary));
for (const host of hosts) {
  until(`${host} in the configuration`, () => {
    if (rs.conf().members.some((m) => m.host === host)) return true;
    const r = rs.add({ host });
    print(`rs-init.js: added ${host}: ${JSON.stringify(r)}`);
    return false; // checked again on the next round
  });
}
print(`rs-init.js: members ${rs.conf().members.map((m) => m.host).join(", ")}`);
