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

for (const host of hosts) {
  until(`${host} to answer`, () =>
    new Mongo(`mongodb://${host}/?directConnection=true`).getDB("admin").runCommand({ ping: 1 }).ok);
}

db = connect(asRoot(hosts[0]));
const status = db.adminCommand({ replSetGetStatus: 1 });
if (status.ok) {
  print(`rs-init.js: replica set ${status.set} exists`);
} else if (status.code === 94) { // NotYetInitialized
  const r = rs.initiate({ _id: setName, members: [{ _id: 0, host: hosts[0] }] });
  if (!r.ok) throw new Error(`rs-init.js: rs.initiate: ${JSON.stringify(r)}`);
  print(`rs-init.js: initiated ${setName} on ${hosts[0]}`);
} else {
  throw new Error(`rs-init.js: replSetGetStatus: ${JSON.stringify(status)}`);
}

const primary = until("a primary", () => db.adminCommand({ hello: 1 }).primary);
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
