/*
 * 03_pid - add CLONE_NEWPID: the child starts a new process-id namespace and
 * is its PID 1. The parent still knows it by an ordinary pid of its own: one
 * process, two numbers. ps still lists the host's processes, because ps reads
 * /proc, and this /proc belongs to the host's namespace.
 *
 * usage: 03_pid [command [args...]]    (default: /bin/bash)
 */
#include "common.h"

static int child_main(void *command)
{
    printf("Container [%5d] - inside the container!\n", getpid());
    if (sethostname("container", strlen("container")) == -1)
        die("sethostname");
    return run_command(command);
}

int main(int argc, char *argv[])
{
    printf("Parent [%5d] - start a container!\n", getpid());
    fflush(stdout);
    pid_t child = clone(child_main, STACK_TOP, CLONE_NEWUTS | CLONE_NEWPID | SIGCHLD,
                        command_line(argc, argv));
    if (child == -1)
        die("clone");
    printf("Parent [%5d] - the container's PID 1 is pid %d out here\n", getpid(), child);

    int status = wait_for(child);
    printf("Parent - container stopped!\n");
    return status;
}
