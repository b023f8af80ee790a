/* ringfort.h included twice in one translation unit: the include guard holds. */
#include "ringfort.h"
#include "ringfort.h"

int main(void) {
    rf_record rec = {0};
    return (int)rec.len + (rf_status_name(RF_DONE) == NULL);
}
