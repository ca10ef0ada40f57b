//! LIS3MDL driver against `embedded-hal-mock` transaction lists. Every test ends with `done()` on the
//! released bus, which asserts that every expected transaction happened.

use embedded_hal::i2c::ErrorKind;
use embedded_hal_mock::eh1::i2c::{Mock, Transaction as T};
use firmware::lis3mdl::{Config, DataRate, Error, FullScale, Lis3mdl, OperatingMode, Performance};

const ADDR: u8 = 0x1C;

/// Runs `f` on a driver over a mock with `expect`, then checks that all of `expect` was used.
fn with_mock<R>(expect: &[T], f: impl FnOnce(&mut Lis3mdl<Mock>) -> R) -> R {
    let mut dev = Lis3mdl::new(Mock::new(expect), ADDR);
    let r = f(&mut dev);
    dev.release().done();
    r
}

#[test]
fn init_checks_identity_and_writes_config_burst() {
    let cfg = Config {
        full_scale: FullScale::G8,
        data_rate: DataRate::Hz10,
        performance: Performance::UltraHigh,
        mode: OperatingMode::Continuous,
        temperature_enabled: true,
        block_data_update: true,
    };
    // By hand from the datasheet bit tables:
    // CTRL_REG1 = TEMP_EN(0x80) | OM=11<<5 (0x60) | DO=100<<2 (0x10) = 0xF0
    // CTRL_REG2 = FS=01<<5 = 0x20; CTRL_REG3 = MD=00; CTRL_REG4 = OMZ=11<<2 = 0x0C; CTRL_REG5 = BDU 0x40.
    let expect = [
        T::write_read(ADDR, vec![0x0F], vec![0x3D]),
        T::write(ADDR, vec![0x20 | 0x80, 0xF0, 0x20, 0x00, 0x0C, 0x40]),
    ];
    with_mock(&expect, |d| {
        d.init(&cfg).unwrap();
        assert_eq!(d.full_scale(), FullScale::G8);
    });
}

#[test]
fn default_config_bits() {
    // Defaults: temp on, low power (OM 00), 5 Hz (DO 011 -> 0x0C), ±4 gauss, continuous, BDU.
    assert_eq!(
        Config::default().ctrl_regs(),
        [0x8C, 0x00, 0x00, 0x00, 0x40]
    );
}

#[test]
fn wrong_identity_is_an_error_and_nothing_is_written() {
    let expect = [T::write_read(ADDR, vec![0x0F], vec![0x33])];
    let r = with_mock(&expect, |d| d.init(&Config::default()));
    assert_eq!(r, Err(Error::WrongIdentity(0x33)));
}

#[test]
fn bus_error_propagates_not_panics() {
    let expect = [T::write_read(ADDR, vec![0x0F], vec![0]).with_error(ErrorKind::Other)];
    let r = with_mock(&expect, |d| d.init(&Config::default()));
    assert_eq!(r, Err(Error::Bus(ErrorKind::Other)));
    let expect = [
        T::write_read(ADDR, vec![0x28 | 0x80], vec![0; 6]).with_error(ErrorKind::ArbitrationLoss)
    ];
    let r = with_mock(&expect, |d| d.read_raw());
    assert_eq!(r, Err(Error::Bus(ErrorKind::ArbitrationLoss)));
}

#[test]
fn data_ready_reads_zyxda() {
    let expect = [
        T::write_read(ADDR, vec![0x27], vec![0x08]),
        T::write_read(ADDR, vec![0x27], vec![0x07]),
        T::write_read(ADDR, vec![0x27], vec![0x8F]),
    ];
    with_mock(&expect, |d| {
        assert!(d.data_ready().unwrap());
        assert!(!d.data_ready().unwrap());
        let s = d.status().unwrap();
        assert!(s.xyz_ready() && s.xyz_overrun());
    });
}

#[test]
fn raw_and_scaled_field() {
    // x = 6842 LSB (0x1ABA) = 1 gauss = 100 µT at ±4 gauss; y = -6842 (0xE546); z = 3421 (0x0D5D) = 50 µT.
    let out = vec![0xBA, 0x1A, 0x46, 0xE5, 0x5D, 0x0D];
    let expect = [
        T::write_read(ADDR, vec![0xA8], out.clone()),
        T::write_read(ADDR, vec![0xA8], out),
    ];
    with_mock(&expect, |d| {
        let raw = d.read_raw().unwrap();
        assert_eq!((raw.x, raw.y, raw.z), (6842, -6842, 3421));
        let f = d.read_field_ut().unwrap();
        assert!(
            (f.x_ut - 100.0).abs() < 1e-3
                && (f.y_ut + 100.0).abs() < 1e-3
                && (f.z_ut - 50.0).abs() < 1e-3
        );
    });
}

#[test]
fn temperature_scale() {
    // 8 LSB/°C, 0 = 25 °C: raw -40 (0xFFD8) = 20 °C; raw 80 = 35 °C.
    let expect = [
        T::write_read(ADDR, vec![0xAE], vec![0xD8, 0xFF]),
        T::write_read(ADDR, vec![0xAE], vec![80, 0]),
    ];
    with_mock(&expect, |d| {
        assert_eq!(d.read_temperature_c().unwrap(), 20.0);
        assert_eq!(d.read_temperature_c().unwrap(), 35.0);
    });
}

#[test]
fn single_conversion_sets_md() {
    // Read-modify-write of CTRL_REG3: keep LP/SIM bits, MD = 01.
    let expect = [
        T::write_read(ADDR, vec![0x22], vec![0x23]),
        T::write(ADDR, vec![0x22, 0x21]),
    ];
    with_mock(&expect, |d| d.set_mode(OperatingMode::Single).unwrap());
}
