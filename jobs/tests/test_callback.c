/* Unit tests of the webhook target policy (callback.h): the special-purpose address ranges,
 * the JOBS_CALLBACK_ALLOW entries, and the connection pin. No network: literal addresses
 * and "localhost" (from /etc/hosts) only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "callback.h"

static void special_ranges(void **state) {
  (void)state;
  static const char *const special[] = {
      "0.0.0.0", "10.1.2.3", "100.64.0.1", "100.127.255.255", "127.0.0.1", "127.255.0.1",
      "169.254.169.254", "172.16.0.1", "172.31.255.255", "192.168.0.1", "192.0.0.8",
      "192.0.2.1", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9",
      "224.0.0.1", "239.1.1.1", "240.0.0.1", "255.255.255.255", "::", "::1",
      "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1", "64:ff9b::a00:1", "64:ff9b:1::1",
      "fc00::1", "fd12:3456::1", "fe80::1", "fec0::1", "ff02::1", "2001:db8::1", "2001::1",
      "2002:7f00:1::1", "3fff::1", "100::1", "not an address", NULL};
  for (int i = 0; special[i]; i++)
    if (!cb_address_special(special[i])) fail_msg("%s should be special", special[i]);
  static const char *const public_[] = {"1.1.1.1", "8.8.8.8", "93.184.216.34", "100.63.255.255",
                                        "100.128.0.1", "172.15.255.255", "172.32.0.1",
                                        "192.169.0.1", "198.17.255.255", "198.20.0.1",
                                        "223.255.255.255", "::ffff:8.8.8.8", "64:ff9b::808:808",
                                        "2606:4700::1111", "2a00:1450::1", "2001:4860::8888",
                                        NULL};
  for (int i = 0; public_[i]; i++)
    if (cb_address_special(public_[i])) fail_msg("%s should be public", public_[i]);
}

static int check(const char *spec, const char *url, char *pin, size_t cap) {
  char err[256], why[200];
  cb_policy *p = cb_policy_new(spec, err, sizeof err);
  if (!p) fail_msg("policy %s: %s", spec, err);
  int rc = cb_check(p, url, pin, cap, why, sizeof why);
  cb_policy_free(p);
  return rc;
}

static void entries_and_urls(void **state) {
  (void)state;
  char pin[512];
  /* default: public addresses only, however a loopback address is spelled */
  assert_int_equal(check("public", "https://93.184.216.34/x", pin, sizeof pin), 0);
  assert_string_equal(pin, "::93.184.216.34:"); /* a literal is pinned too: no resolution */
  static const char *const refused[] = {
      "http://127.0.0.1/", "http://127.1/", "http://0x7f.1/", "http://2130706433/",
      "http://[::1]/", "http://[::ffff:7f00:1]/", "http://localhost/", "http://LOCALHOST./",
      "http://10.0.0.1:8080/", "http://169.254.169.254/", "http://[fe80::1%25eth0]/",
      "ftp://93.184.216.34/", "http:///x", "not a url", NULL};
  for (int i = 0; refused[i]; i++)
    if (check("public", refused[i], pin, sizeof pin) == 0) fail_msg("%s allowed", refused[i]);
  /* CIDR, address:port, names (exact and subdomains), *, none */
  assert_int_equal(check("public, 10.0.0.0/8", "http://10.9.8.7:81/", pin, sizeof pin), 0);
  assert_int_equal(check("10.0.0.0/8", "http://11.0.0.1/", pin, sizeof pin), -1);
  assert_int_equal(check("127.0.0.1:9000", "http://127.0.0.1:9000/h", pin, sizeof pin), 0);
  assert_int_equal(check("127.0.0.1:9000", "http://127.0.0.1:9001/h", pin, sizeof pin), -1);
  assert_int_equal(check("[::1]:9000", "http://[::1]:9000/", pin, sizeof pin), 0);
  assert_int_equal(check("::1", "http://[::1]:1/", pin, sizeof pin), 0);
  assert_int_equal(check("127.0.0.0/8", "http://[::ffff:127.0.0.2]/", pin, sizeof pin), 0);
  assert_int_equal(check("hooks.example.org", "https://Hooks.Example.ORG./a", pin, sizeof pin), 0);
  assert_int_equal(check("hooks.example.org:443", "https://hooks.example.org/a", pin, sizeof pin), 0);
  assert_int_equal(check("hooks.example.org:8443", "https://hooks.example.org/a", pin, sizeof pin), -1);
  assert_int_equal(check("*.example.org", "https://a.b.example.org/", pin, sizeof pin), 0);
  assert_int_equal(check("*.example.org", "https://example.org.evil.test/", pin, sizeof pin), -1);
  assert_int_equal(check("*.example.org", "https://badexample.org/", pin, sizeof pin), -1);
  assert_int_equal(check("*", "http://127.0.0.1/", pin, sizeof pin), 0);
  assert_int_equal(check("none", "https://93.184.216.34/", pin, sizeof pin), -1);
  assert_int_equal(check("", "https://93.184.216.34/", pin, sizeof pin), -1);
  /* a name judged by its addresses is pinned to the first of them, for any spelling */
  assert_int_equal(check("127.0.0.0/8, ::1", "http://localhost:8080/x", pin, sizeof pin), 0);
  assert_true(strcmp(pin, "::127.0.0.1:") == 0 || strcmp(pin, "::[::1]:") == 0);
  char plain[sizeof pin];
  memcpy(plain, pin, sizeof plain);
  assert_int_equal(check("127.0.0.0/8, ::1", "http://LocalHost.:8080/x", pin, sizeof pin), 0);
  assert_string_equal(pin, plain);
  /* a name entry vouches for the host: nothing pinned */
  assert_int_equal(check("localhost", "http://localhost./x", pin, sizeof pin), 0);
  assert_string_equal(pin, "");
}

/* The host libcurl would connect to is the one checked: every spelling of an address is
 * read as the address it means (and pinned to it), so none reaches another one. */
static void one_resolution_for_every_spelling(void **state) {
  (void)state;
  char pin[128];
  static const char *const loopback[] = {
      "http://127.0.0.1/", "http://127.1/", "http://0x7f.1/", "http://0x7f000001/",
      "http://2130706433/", "http://0177.0.0.1/", "http://0177.1/", "http://127.0.0.1./",
      "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", NULL};
  for (int i = 0; loopback[i]; i++) {
    if (check("127.0.0.1", loopback[i], pin, sizeof pin) != 0)
      fail_msg("%s is 127.0.0.1 and should pass a 127.0.0.1 entry", loopback[i]);
    if (strcmp(pin, "::127.0.0.1:") != 0) fail_msg("%s pinned as %s", loopback[i], pin);
    if (check("public", loopback[i], pin, sizeof pin) == 0)
      fail_msg("%s is loopback: public must refuse it", loopback[i]);
    assert_string_equal(pin, "");
  }
  /* IPv6 literals: pinned in brackets; zones refused */
  assert_int_equal(check("::1", "http://[::1]:9000/", pin, sizeof pin), 0);
  assert_string_equal(pin, "::[::1]:");
  assert_int_equal(check("::1", "http://[0:0:0:0:0:0:0:1]/", pin, sizeof pin), 0);
  assert_string_equal(pin, "::[::1]:");
  assert_int_equal(check("*", "http://[fe80::1%25lo]/", pin, sizeof pin), -1);
  assert_int_equal(check("fe80::/10", "http://[fe80::1%25lo]/", pin, sizeof pin), -1);
  /* a caller that only asks (submission) passes no room for a pin */
  char err[128], why[128];
  cb_policy *lo = cb_policy_new("127.0.0.0/8", err, sizeof err);
  assert_non_null(lo);
  assert_int_equal(cb_check(lo, "http://0x7f.1:8080/", NULL, 0, why, sizeof why), 0);
  assert_int_equal(cb_check(lo, "http://10.0.0.1/", NULL, 0, why, sizeof why), -1);
  cb_policy_free(lo);
  /* a public name never resolves here (no network); a trailing-dot loopback name is
   * judged by its address like the name without the dot */
  assert_int_equal(check("public", "http://localhost./", pin, sizeof pin), -1);
  assert_int_equal(check("public", "http://localhost../", pin, sizeof pin), -1);
}

static void malformed_policies_are_refused(void **state) {
  (void)state;
  static const char *const bad[] = {"10.0.0.0/33", "10.0.0.0/x", "::/129", "public,none",
                                    "exa mple.org", "host:0", "host:99999", "[::1",
                                    "[::1]x", "[host]", "-bad.org", "1.2.3.4:", NULL};
  char err[256];
  for (int i = 0; bad[i]; i++) {
    cb_policy *p = cb_policy_new(bad[i], err, sizeof err);
    if (p) {
      cb_policy_free(p);
      fail_msg("\"%s\" accepted", bad[i]);
    }
    assert_non_null(strstr(err, "JOBS_CALLBACK_ALLOW"));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(special_ranges),
      cmocka_unit_test(entries_and_urls),
      cmocka_unit_test(one_resolution_for_every_spelling),
      cmocka_unit_test(malformed_policies_are_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
