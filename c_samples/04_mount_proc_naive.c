/*
 * 04_mount_proc_naive - the article's version of 04_mount_proc: it mounts
 * /proc WITHOUT making the mounts private first. Where "/" is shared (every
 * systemd host), that mount propagates back to the parent's namespace and
 * hides the host's /proc behind this container's one, which dies with it.
 *
 * Run it ONLY inside the lab's sandbox (labkit.lessons.sandbox.shared_root), never
 * on a real host.
 *
 * usage: 04_mount_proc_naive [command [args...]]    (default: /bin/bash)
 */
#include "common.h"

static int child_main(void *command)
{
    printf("Container [%5d] - inside the container!\n", getpid());
    if (sethostname("container", strlen("container")) == -1)
        die("sethostname");
    /* Missing here: mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) */
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
