/* A container's program that is no Go program: a static C binary that
 * sleeps until SIGTERM or SIGINT. The CRI test bed ships it as an image of
 * its own (tests/common/cri.rs), the container headroom node must skip. */
#include <signal.h>
#include <unistd.h>

static volatile sig_atomic_t done;

static void stop(int sig) { (void)sig; done = 1; }

int main(void) {
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    while (!done)
        pause();
    return 0;
}
