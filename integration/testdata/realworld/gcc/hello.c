/* A small C program built by the gcc and cross cases: it says for which architecture it was
 * compiled and on which it runs, and does a little arithmetic so the optimiser has work. */
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#if defined(__x86_64__)
#define BUILT_FOR "x86_64"
#elif defined(__aarch64__)
#define BUILT_FOR "aarch64"
#else
#define BUILT_FOR "other"
#endif

static unsigned long primes_below(unsigned long n)
{
	unsigned long count = 0;
	for (unsigned long i = 2; i < n; i++) {
		int prime = 1;
		for (unsigned long d = 2; d * d <= i; d++)
			if (i % d == 0) {
				prime = 0;
				break;
			}
		count += prime;
	}
	return count;
}

int main(int argc, char **argv)
{
	struct utsname u;
	if (uname(&u) != 0)
		return 1;
	printf("built for %s, running on %s, %lu primes below 10000\n", BUILT_FOR, u.machine, primes_below(10000));
	/* --check: exit 0 only on the architecture it was built for (a build-time self test). */
	if (argc > 1 && strcmp(argv[1], "--check") == 0)
		return strcmp(BUILT_FOR, u.machine) == 0 ? 0 : 2;
	return 0;
}
