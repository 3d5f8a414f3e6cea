/* usage — the voter service's --help text: what it is (VOTER_ABOUT) and its own
 * configuration (VOTER_OPTIONS); service_run prints the options every service shares
 * between them. */
#ifndef VOTER_USAGE_H
#define VOTER_USAGE_H

#define VOTER_ABOUT                                                                          \
  "The voter service of the Voter API: votes, results and winners under /voter, replicas\n"  \
  "of candidates and elections fed by events, simulation and bulk ingestion.\n"

#define VOTER_OPTIONS                                                                        \
  "  CANDIDATE_URL        candidate service, asked to replay by POST /voter/drop/candidates\n" \
  "                       (default http://127.0.0.1:8082)\n"                                 \
  "  CANDIDATE_API_KEY    X-API-Key for that request, when CANDIDATE_URL is a gateway\n"     \
  "                       (default: none)\n"                                                 \
  "  REPLICA_QUEUE        queue feeding the replicas (default voter.replicas)\n"             \
  "  REPLICA_RETRY_MS     delay before a failed event is retried (default 1000)\n"           \
  "  REPLICA_MAX_ATTEMPTS attempts before an event is dead-lettered (default 5)\n"           \
  "  BATCH_CHUNK          votes per work-queue message for bulk ingestion (default 2000)\n"   \
  "  INGEST_WORKERS       bulk ingestion consumers per process, each one chunk in flight\n" \
  "                       (1-16, default 3)\n"                                               \
  "  RECONCILE_S          how often uncounted votes are looked for (default 30)\n"           \
  "  VOTER_KNOWN_TTL_MS   how long a vote's election and candidate, once found live in the\n" \
  "                       replicas, are believed without asking again (default 1000; 0: off)\n" \
  "  VOTER_FLAG_GATHER_MS how long the writer of votes' tallied flags gathers more votes\n"  \
  "                       before it writes them (default 20)\n"                             \
  "  VOTER_INSTANCE       this replica's name, unique among the live replicas sharing the\n" \
  "                       database (1-32 of A-Z a-z 0-9 . _ -; default 0): its tally shard\n" \
  "  STREAM_HEARTBEAT_S, STREAM_MIN_INTERVAL_MS, STREAM_RECHECK_MS, STREAM_MAX\n"            \
  "                       live results (GET /voter/results/{election}/stream): heartbeat\n"  \
  "                       (default 15 s), least time between two events of an election\n"   \
  "                       (250 ms), re-read of watched elections without an announcement\n"  \
  "                       (1000 ms), open streams per process (1000)\n"                      \
  "  GATEWAY_PROOF_SECRET the secret shared with the gateway: drops, simulation and deleting\n" \
  "                       a vote need its proof with the admin scope (unset: refused, 403)\n"

#endif
