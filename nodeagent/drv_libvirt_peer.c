/* libvirt driver, the other side of a live migration that was cut off with
 * the agent driving it. libvirt migrates in phases the client calls in turn
 * (prepare on the destination, perform on the source, finish on the
 * destination, confirm on the source). A client killed between them can
 * leave the destination's copy waiting for a finish that never comes, or
 * running while the source's copy sits paused for a confirm that never
 * comes. After a restart the agent asks here which it is. */
#include <string.h>
#include <unistd.h>

#include "drv_libvirt_int.h"

int nodeagent_libvirt_peer_outcome(struct nodeagent_driver *dd, const char *dest_uri,
                                   const char *uuid, char *detail, size_t n)
{
    if (!dd || dd->ops != &lv_ops || !dest_uri || !*dest_uri || !uuid || !*uuid) {
        snprintf(detail, n, "no destination hypervisor to ask");
        return NODEAGENT_PEER_UNKNOWN;
    }
    virConnectPtr dconn = virConnectOpen(dest_uri);
    if (!dconn) {
        virErrorPtr e = virGetLastError();
        snprintf(detail, n, "destination %s: %s", dest_uri, e && e->message ? e->message : "?");
        virResetLastError();
        return NODEAGENT_PEER_UNKNOWN;
    }
    int out;
    virDomainPtr dom = virDomainLookupByUUIDString(dconn, uuid);
    if (!dom) {
        virErrorPtr e = virGetLastError();
        if (e && e->code == VIR_ERR_NO_DOMAIN) {
            snprintf(detail, n, "no copy on %s", dest_uri);
            out = NODEAGENT_PEER_ABSENT;
        } else {
            snprintf(detail, n, "destination %s: %s", dest_uri, e && e->message ? e->message : "?");
            out = NODEAGENT_PEER_UNKNOWN;
        }
        virResetLastError();
        virConnectClose(dconn);
        return out;
    }
    /* A finish the dead client asked for may still be under way there. */
    virDomainJobInfo ji;
    for (int w = 0; w < 100 && virDomainGetJobInfo(dom, &ji) == 0 && ji.type != VIR_DOMAIN_JOB_NONE;
         w++)
        usleep(100000);
    virResetLastError();
    int state = 0, reason = 0;
    if (virDomainGetState(dom, &state, &reason, 0) < 0) {
        virErrorPtr e = virGetLastError();
        if (e && e->code == VIR_ERR_NO_DOMAIN) { /* libvirt removed it meanwhile */
            snprintf(detail, n, "no copy on %s", dest_uri);
            out = NODEAGENT_PEER_ABSENT;
        } else {
            snprintf(detail, n, "destination %s: state unknown", dest_uri);
            out = NODEAGENT_PEER_UNKNOWN;
        }
    } else if (state == VIR_DOMAIN_RUNNING) {
        /* The finish ran: the guest goes on there. */
        snprintf(detail, n, "the copy on %s runs", dest_uri);
        out = NODEAGENT_PEER_RUNNING;
    } else if (state == VIR_DOMAIN_PAUSED &&
               (reason == VIR_DOMAIN_PAUSED_MIGRATION || reason == VIR_DOMAIN_PAUSED_STARTING_UP)) {
        /* Still the incoming side of the migration: it never ran. */
        if (virDomainDestroy(dom) == 0) {
            snprintf(detail, n, "removed the unfinished incoming copy on %s", dest_uri);
            out = NODEAGENT_PEER_ABSENT;
        } else {
            virErrorPtr e = virGetLastError();
            snprintf(detail, n, "cannot remove the incoming copy on %s: %s", dest_uri,
                     e && e->message ? e->message : "?");
            out = NODEAGENT_PEER_UNKNOWN;
        }
    } else {
        /* Paused for another reason, or shut off: it may have run there;
         * someone must look before either copy goes on. */
        snprintf(detail, n, "the copy on %s is in libvirt state %d (reason %d)", dest_uri, state,
                 reason);
        out = NODEAGENT_PEER_UNKNOWN;
    }
    virResetLastError();
    virDomainFree(dom);
    virConnectClose(dconn);
    return out;
}
