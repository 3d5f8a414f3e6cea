/* config — environment lookups; see config.h. */
#include "voter/config.h"

#include <errno.h>
#include <stdlib.h>
#include <strings.h>

#include "voter/log.h"

const char *cfg_str(const char *name, const char *def) {
  const char *v = getenv(name);
  return (v && *v) ? v : def;
}

int cfg_long(const char *name, long def, long min, long max, long *out) {
  const char *v = getenv(name);
  *out = def;
  if (!v || !*v) return 0;
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || *end || n < min || n > max) {
    log_error("config: %s=%s is not an integer in [%ld, %ld]", name, v, min, max);
    return -1;
  }
  *out = n;
  return 0;
}

int cfg_bool(const char *name, bool def, bool *out) {
  const char *v = getenv(name);
  *out = def;
  if (!v || !*v) return 0;
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  for (int i = 0; i < 4; i++) {
    if (strcasecmp(v, yes[i]) == 0) return *out = true, 0;
    if (strcasecmp(v, no[i]) == 0) return *out = false, 0;
  }
  log_error("config: %s=%s is not a boolean", name, v);
  return -1;
}
