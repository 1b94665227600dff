/*
 * container - the lessons' samples carried to a whole container, for the benchmark: the
 * namespaces of 04_mount_proc plus IPC and network, then the image's root filesystem entered
 * with pivot_root, as the lab's runtime and runc do. Nothing else: no overlay, no /dev, no
 * masked paths, no capability cut. It measures what the kernel's part of a start costs.
 *
 * usage: container ROOTFS [command [args...]]    (looked up inside ROOTFS; default /bin/bash)
 *
 * In the child, in order:
 *   1. make every mount private, so nothing below reaches the parent's mount namespace;
 *   2. set the hostname (UTS) and switch on the loopback interface (network);
 *   3. bind ROOTFS onto itself, read-only: pivot_root needs its new root to be a mount;
 *   4. mount a fresh /proc inside it, for the new PID namespace;
 *   5. pivot_root(".", ".") stacks the old root under the new one; detach it, and only the
 *      image's files are left.
 */
#include "../common.h"
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

static char *rootfs;

static void loopback_up(void)
{
    struct ifreq request = {0};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        die("socket");
    strcpy(request.ifr_name, "lo");
    if (ioctl(fd, SIOCGIFFLAGS, &request) == -1)
        die("SIOCGIFFLAGS lo");
    request.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &request) == -1)
        die("SIOCSIFFLAGS lo");
    close(fd);
}

static void enter_rootfs(void)
{
    char proc[4096];
    if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) == -1)
        die("bind the rootfs");
    if (mount(NULL, rootfs, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) == -1)
        die("make the rootfs read-only");
    snprintf(proc, sizeof proc, "%s/proc", rootfs);
    if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == -1)
        die("mount -t proc proc ROOTFS/proc");
    if (chdir(rootfs) == -1)
        die("chdir ROOTFS");
    /* glibc has no wrapper for pivot_root */
    if (syscall(SYS_pivot_root, ".", ".") == -1)
        die("pivot_root");
    if (umount2(".", MNT_DETACH) == -1)
        die("detach the old root");
    if (chdir("/") == -1)
        die("chdir /");
}

static int child_main(void *command)
{
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1)
        die("mount --make-rprivate /");
    if (sethostname("container", strlen("container")) == -1)
        die("sethostname");
    loopback_up();
    enter_rootfs();
    return run_command(command);
}

int main(int argc, char *argv[])
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s ROOTFS [command [args...]]\n", argv[0]);
        return 2;
    }
    rootfs = argv[1];
    fflush(stdout);
    pid_t child = clone(child_main, STACK_TOP,
                        CLONE_NEWUTS | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC |
                        CLONE_NEWNET | SIGCHLD,
                        command_line(argc - 1, argv + 1));
    if (child == -1)
        die("clone");
    return wait_for(child);
}
