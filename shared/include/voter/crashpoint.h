/* crashpoint — named places where a test build can be made to die (prefix crash_).
 *
 * Exactly-once claims are only as good as the crashes they were tried against. In a build
 * with VOTER_CRASH_POINTS defined (the sanitizer/test build: CMake option
 * VOTER_CRASH_POINTS, on by default when VOTER_SANITIZE is), CRASH_POINT("vote.inserted")
 * ends the process with _exit(137) - no atexit handlers, no flushing, as close to SIGKILL
 * as a process can do to itself - when the environment variable VOTER_CRASH_AT names that
 * point. "name:N" dies the N-th time the point is reached (1 = the first). In every other
 * build the macro expands to nothing and the variable is ignored, so release binaries
 * carry neither the check nor the names. The points are listed in docs/operations.md.
 *
 * VOTER_PAUSE_AT="name:MS" (same builds) instead sleeps MS milliseconds every time the
 * point is reached, holding whatever the thread holds there: a test can then observe two
 * threads inside one stretch of code at once, or another thread waiting for one, without
 * depending on how fast the machine is. Both variables may name points at once. */
#ifndef VOTER_CRASHPOINT_H
#define VOTER_CRASHPOINT_H

#ifdef VOTER_CRASH_POINTS
void crash_point(const char *name);
#define CRASH_POINT(name) crash_point(name)
#else
#define CRASH_POINT(name) ((void)0)
#endif

#endif
