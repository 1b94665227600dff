/*
 * 07_net - add CLONE_NEWNET: the child gets a network stack of its own, with
 * one interface, the loopback lo, switched off. It lists its interfaces, then
 * runs the command; whatever connects it to the host must come from outside
 * (a veth pair, made by the host with `ip link add ... netns PID`).
 *
 * usage: 07_net [command [args...]]    (default: /bin/bash)
 */
#include "common.h"
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

/* Print each interface of this network namespace, and whether it is switched on. */
static void list_interfaces(void)
{
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct if_nameindex *interfaces = if_nameindex();
    if (sock == -1 || interfaces == NULL)
        die("listing the interfaces");
    printf("Container - my interfaces:");
    for (struct if_nameindex *i = interfaces; i->if_index != 0; i++) {
        struct ifreq request = {0};
        strncpy(request.ifr_name, i->if_name, IFNAMSIZ - 1);
        if (ioctl(sock, SIOCGIFFLAGS, &request) == -1)
            die("SIOCGIFFLAGS");
        printf(" %s (%s)", i->if_name, request.ifr_flags & IFF_UP ? "UP" : "DOWN");
    }
    printf("\n");
    if_freenameindex(interfaces);
    close(sock);
}

static int child_main(void *command)
{
    if (sethostname("container", strlen("container")) == -1)
        die("sethostname");
    list_interfaces();
    return run_command(command);
}

int main(int argc, char *argv[])
{
    printf("Parent - start a container with a network namespace of its own!\n");
    fflush(stdout);
    pid_t child = clone(child_main, STACK_TOP, CLONE_NEWUTS | CLONE_NEWNET | SIGCHLD,
                        command_line(argc, argv));
    if (child == -1)
        die("clone");
    printf("Parent - the container's pid is %d\n", child);
    fflush(stdout);

    int status = wait_for(child);
    printf("Parent - container stopped!\n");
    return status;
}
