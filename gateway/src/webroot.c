/* webroot — the web client's files, from memory; see webroot.h. */
#define _GNU_SOURCE
#include "webroot.h"

#include <dirent.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "voter/log.h"
#include "voter/xalloc.h"

#define WEB_MAX_FILES 128
#define WEB_MAX_BYTES (8u << 20)
#define WEB_MAX_DEPTH 3

static const char csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'";

typedef struct web_file {
  char *url; /* "/" or "/web/<relative path>" */
  const char *type;
  char *data;
  size_t len;
  char etag[20];
  const char *headers[13];
} web_file;

static web_file files[WEB_MAX_FILES];
static int nfiles;
static size_t total_bytes;

static const char *type_of(const char *name) {
  static const char *const types[][2] = {
      {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
      {".json", "application/json"}, {".csv", "text/csv; charset=utf-8"},
      {".svg", "image/svg+xml"}, {".png", "image/png"}, {".ico", "image/x-icon"},
      {".txt", "text/plain; charset=utf-8"}};
  const char *dot = strrchr(name, '.');
  if (!dot) return NULL;
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if (strcmp(dot, types[i][0]) == 0) return types[i][1];
  return NULL;
}

static int add_file(const char *full, const char *url, const char *type) {
  if (nfiles == WEB_MAX_FILES) {
    log_error("web: more than %d files", WEB_MAX_FILES);
    return -1;
  }
  FILE *f = fopen(full, "rb");
  if (!f) return -1;
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || total_bytes + (size_t)st.st_size > WEB_MAX_BYTES) {
    fclose(f);
    log_error("web: %s cannot be read or the folder is over %u bytes", full, WEB_MAX_BYTES);
    return -1;
  }
  web_file *w = &files[nfiles];
  w->len = (size_t)st.st_size;
  w->data = xmalloc(w->len ? w->len : 1);
  bool ok = fread(w->data, 1, w->len, f) == w->len;
  fclose(f);
  if (!ok) {
    free(w->data);
    return -1;
  }
  w->url = xstrdup(url);
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)w->data, w->len, md);
  w->etag[0] = '"';
  for (int i = 0; i < 8; i++) sprintf(w->etag + 1 + 2 * i, "%02x", md[i]);
  strcpy(w->etag + 17, "\"");
  w->type = type;
  const char *h[] = {"ETag", w->etag, "Cache-Control", "no-cache", "Content-Security-Policy", csp,
                     "X-Content-Type-Options", "nosniff", "Referrer-Policy", "no-referrer",
                     "X-Frame-Options", "DENY", NULL};
  memcpy(w->headers, h, sizeof h);
  total_bytes += w->len;
  nfiles++;
  return 0;
}

static int load_dir(const char *dir, const char *rel, int depth) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue; /* also . and .. */
    char full[4096], url[1024];
    snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
    snprintf(url, sizeof url, "%s/%s", rel, e->d_name);
    struct stat st;
    if (stat(full, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      if (depth < WEB_MAX_DEPTH) rc = load_dir(full, url, depth + 1);
    } else if (S_ISREG(st.st_mode) && type_of(e->d_name)) {
      rc = add_file(full, url, type_of(e->d_name));
      if (rc == 0 && depth == 0 && strcmp(e->d_name, "index.html") == 0)
        rc = add_file(full, "/", type_of(e->d_name));
    }
  }
  closedir(d);
  return rc;
}

int gw_web_load(const char *dir) {
  struct stat st;
  if (!dir || !*dir || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
  if (load_dir(dir, "/web", 0) != 0) {
    gw_web_free();
    return -1;
  }
  log_fields(LOG_INFO, "web client loaded",
             json_pack("{s:s, s:i, s:I}", "dir", dir, "files", nfiles, "bytes", (json_int_t)total_bytes));
  return 0;
}

void gw_web_free(void) {
  for (int i = 0; i < nfiles; i++) {
    free(files[i].url);
    free(files[i].data);
  }
  nfiles = 0;
  total_bytes = 0;
}

/* If-None-Match is a list of entity tags, or "*". */
static bool etag_matches(const char *header, const char *etag) {
  if (!header) return false;
  if (strcmp(header, "*") == 0) return true;
  size_t n = strlen(etag);
  for (const char *p = header; (p = strstr(p, etag)); p += n) return true;
  return false;
}

bool gw_web_wants(const char *path, size_t n) {
  return nfiles > 0 && (n == 1 || (n > 5 && memcmp(path, "/web/", 5) == 0));
}

bool gw_web_lookup(const char *path, size_t n, const char *if_none_match, gw_web_reply *out) {
  if (!gw_web_wants(path, n)) return false;
  for (int i = 0; i < nfiles; i++) {
    web_file *w = &files[i];
    if (strlen(w->url) != n || memcmp(w->url, path, n) != 0) continue;
    *out = (gw_web_reply){.content_type = w->type, .headers = w->headers};
    if (etag_matches(if_none_match, w->etag)) {
      out->status = 304;
      return true;
    }
    out->status = 200;
    out->body = xmalloc(w->len ? w->len : 1);
    memcpy(out->body, w->data, w->len);
    out->len = w->len;
    return true;
  }
  return false;
}
