/* ringfort.h compiles on its own, as the first and only include. */
#include "ringfort.h"

int main(void) {
    rf_status s = RF_OK;
    rf_stats stats = {0};
    rf_handler h = {0};
    (void)h;
    return (int)s + (int)stats.ticks + (rf_version() == NULL) + RF_VERSION_MAJOR * 0;
}
