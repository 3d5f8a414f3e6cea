/* config — 12-factor configuration from environment variables.
 *
 * Every lookup names its default, so a service's whole configuration is visible where
 * it reads it (service_run for what every service shares, the service's own configure
 * hook for the rest). Malformed numbers are not silently replaced by the default: the getter
 * reports an error so main() can refuse to start with a clear message. */
#ifndef VOTER_CONFIG_H
#define VOTER_CONFIG_H

#include <stdbool.h>

/* The variable's value, or def when unset or empty. */
const char *cfg_str(const char *name, const char *def);

/* Parses an integer in [min, max]; 0 on success, -1 (and a logged error) when the
 * variable is set but not a valid integer in range. *out is def when unset. */
int cfg_long(const char *name, long def, long min, long max, long *out);

/* true for 1/true/yes/on, false for 0/false/no/off; -1 on anything else. */
int cfg_bool(const char *name, bool def, bool *out);

#endif
