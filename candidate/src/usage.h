/* usage — the candidate service's --help text: what it is (CANDIDATE_ABOUT) and its own
 * configuration (CANDIDATE_OPTIONS); service_run prints the options every service shares
 * between them. */
#ifndef CANDIDATE_USAGE_H
#define CANDIDATE_USAGE_H

#define CANDIDATE_ABOUT                                                                      \
  "The candidate service of the Voter API: CRUD of candidates under /candidate, events\n"    \
  "candidate.created|updated|deleted published through a transactional outbox, and a\n"     \
  "read-only replica of the election service's elections fed by election.* events\n"        \
  "(queue candidate.elections, with .retry and .dlq). A candidate's election must be in\n"  \
  "the replica.\n"

#define CANDIDATE_OPTIONS                                                                    \
  "  REPLICA_QUEUE        queue feeding the election replica (default candidate.elections;\n" \
  "                       its retry and dead-letter queues add .retry and .dlq)\n"          \
  "  REPLICA_RETRY_MS     delay before a failed event is retried (default 1000)\n"          \
  "  REPLICA_MAX_ATTEMPTS attempts before an event is dead-lettered (default 5)\n"          \
  "  ELECTION_URL         the election service, asked to replay by POST\n"                  \
  "                       /candidate/drop/elections (default http://127.0.0.1:8081)\n"      \
  "  ELECTION_API_KEY     X-API-Key for that request, when ELECTION_URL is a gateway\n"     \
  "                       (default: none)\n"                                                \
  "  GATEWAY_PROOF_SECRET the secret shared with the gateway: drops and replays need\n"     \
  "                       its proof with the admin scope (unset: they are refused, 403)\n"

#endif
