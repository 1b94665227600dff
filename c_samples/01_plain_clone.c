/*
 * 01_plain_clone - clone() without any namespace flag: a child just like fork()
 * makes. It shares everything with the host: hostname, process ids, mounts.
 *
 * usage: 01_plain_clone [command [args...]]    (default: /bin/bash)
 */
#include "common.h"

static int child_main(void *command)
{
    printf("Container - inside the container!\n");
    return run_command(command);
}

int main(int argc, char *argv[])
{
    printf("Parent - start a container!\n");
    fflush(stdout); /* else the child inherits a copy of unwritten output and prints it twice */
    pid_t child = clone(child_main, STACK_TOP, SIGCHLD, command_line(argc, argv));
    if (child == -1)
        die("clone");

    int status = wait_for(child);
    printf("Parent - container stopped!\n");
    return status;
}
