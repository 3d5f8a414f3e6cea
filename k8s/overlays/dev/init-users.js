// MongoDB first-start script (docker-compose.yml mounts it into
// /docker-entrypoint-initdb.d/): one user per service, each allowed readWrite on its own
// database only, passwords from the container's environment (.env). The official image
// runs it once, when the data volume is empty; to change a password later use
// db.changeUserPassword() or `docker compose down -v` (which deletes the data).
const services = ["election", "candidate", "voter", "jobs"];
for (const svc of services) {
  const variable = `${svc.toUpperCase()}_DB_PASSWORD`;
  const password = process.env[variable];
  if (!password) {
    throw new Error(`init-users.js: ${variable} is not set`);
  }
  db.getSiblingDB(svc).createUser({
    user: svc,
    pwd: password,
    roles: [{ role: "readWrite", db: svc }],
  });
  print(`init-users.js: user ${svc} can read and write database ${svc}`);
}
