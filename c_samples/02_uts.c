/*
 * 02_uts - add CLONE_NEWUTS: the child gets its own hostname (and domain
 * name), so it can rename itself "container" while the host keeps its name.
 *
 * usage: 02_uts [command [args...]]    (default: /bin/bash)
 */
#include "common.h"

static int child_main(void *command)
{
    printf("Container - inside the container!\n");
    if (sethostname("container", strlen("container")) == -1)
        die("sethostname");
    return run_command(command);
}

int main(int argc, char *argv[])
{
    printf("Parent - start a container!\n");
    fflush(stdout);
    pid_t child = clone(child_main, STACK_TOP, CLONE_NEWUTS | SIGCHLD,
                        command_line(argc, argv));
    if (child == -1)
        die("clone");

    int status = wait_for(child);
    printf("Parent - container stopped!\n");
    return status;
}
