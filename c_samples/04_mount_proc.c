/*
 * 04_mount_proc - add CLONE_NEWNS and mount a fresh /proc, so ps shows only
 * the container's processes. The new mount namespace starts as a copy of the
 * parent's; on a systemd host "/" is shared, and a copy of a shared mount
 * passes new mounts back to the host. So first make every mount private.
 *
 * usage: 04_mount_proc [command [args...]]    (default: /bin/bash)
 */
#include "common.h"

static int child_main(void *command)
{
    printf("Container [%5d] - inside the container!\n", getpid());
    if (sethostname("container", strlen("container")) == -1)
        die("sethostname");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1)
        die("mount --make-rprivate /");
    if (mount("proc", "/proc", "proc", 0, NULL) == -1)
        die("mount -t proc proc /proc");
    return run_command(command);
}

int main(int argc, char *argv[])
{
    printf("Parent [%5d] - start a container!\n", getpid());
    fflush(stdout);
    pid_t child = clone(child_main, STACK_TOP,
                        CLONE_NEWUTS | CLONE_NEWPID | CLONE_NEWNS | SIGCHLD,
                        command_line(argc, argv));
    if (child == -1)
        die("clone");
    printf("Parent [%5d] - the container's PID 1 is pid %d out here\n", getpid(), child);

    int status = wait_for(child);
    printf("Parent - container stopped!\n");
    return status;
}
