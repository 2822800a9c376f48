/* Demo program for playbooks/build.yml: built with arm-linux-gnueabihf-gcc,
 * run inside the native armhf window. */
#include <stdio.h>
#include <sys/utsname.h>

int main(void)
{
    struct utsname u;

    if (uname(&u) != 0)
        return 1;
    printf("hello from a 32-bit ARM (armhf) binary: uname -m says %s, sizeof(void *) = %u\n",
           u.machine, (unsigned)sizeof(void *));
    return sizeof(void *) == 4 ? 0 : 2;
}
